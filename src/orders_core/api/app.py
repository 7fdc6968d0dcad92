"""The CRM command API as a Litestar application, given the parts it runs on."""

from __future__ import annotations

from typing import Any

from litestar import Litestar, Response, get
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryPlugin
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController

from orders_core.api.auth import provide_actor
from orders_core.api.catalog import catalog_router
from orders_core.api.errors import EXCEPTION_HANDLERS, error_body
from orders_core.api.orders import orders_router, provide_orders
from orders_core.application import OrdersApplication
from orders_core.blobs import BlobStore

JSON_BODY_LIMIT = 1024 * 1024
HTTP_METRICS = PrometheusConfig(
    app_name="backbone", prefix="backbone_http", group_path=True, exclude=["/metrics"]
)
"""Request latency and counts by route template and status code."""
TRACING = OpenTelemetryConfig(exclude=["/metrics", "/health"])
"""A server span per request (the official ASGI instrumentation), continuing a caller's traceparent."""


@get("/health", sync_to_thread=True)
def health(orders: OrdersApplication) -> Response[dict[str, Any]]:
    """Liveness and readiness: answers 200 only while the event store answers."""
    try:
        position = orders.position()
    except Exception as e:  # any failure to reach the store means not ready
        return Response(
            error_body("unavailable", f"event store unreachable: {type(e).__name__}"), status_code=503
        )
    return Response({"status": "ok", "position": position})


def create_app(
    orders: OrdersApplication,
    blobs: BlobStore,
    jwt_secret: str,
    max_upload_bytes: int,
    max_unzipped_bytes: int,
    also: tuple[list[Any], dict[str, Provide], dict[str, Any]] | None = None,
    traced: bool = False,
) -> Litestar:
    """The command API over `orders`, storing uploads in `blobs`; `also` adds another API's routes
    (handlers, dependencies, state) to the same application, as `backbone up` serves both."""
    routes, dependencies, state = also or ([], {}, {})
    return Litestar(
        route_handlers=[orders_router, catalog_router, health, PrometheusController, *routes],
        middleware=[HTTP_METRICS.middleware],
        # Only when spans go somewhere: the middleware costs CPU on every request even with a no-op tracer.
        plugins=[OpenTelemetryPlugin(TRACING)] if traced else [],
        dependencies={
            "actor": Provide(provide_actor),
            "orders": Provide(provide_orders, sync_to_thread=False),
            **dependencies,
        },
        state=State(
            {
                "orders": orders,
                "blobs": blobs,
                "jwt_secret": jwt_secret,
                "max_upload_bytes": max_upload_bytes,
                "max_unzipped_bytes": max_unzipped_bytes,
                **state,
            }
        ),
        exception_handlers=EXCEPTION_HANDLERS,
        logging_config=None,  # the process's own logging set-up stands; Litestar's default would replace it
        request_max_body_size=JSON_BODY_LIMIT,
        openapi_config=OpenAPIConfig(title="Alexandrite order backbone API", version="1.0.0", path="/schema"),
    )
