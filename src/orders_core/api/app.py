"""The CRM command API as a Litestar application, given the parts it runs on."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import timedelta
from typing import Any

from litestar import Litestar, Request, Response, Router, get
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.openapi import OpenAPIConfig
from litestar.plugins.opentelemetry import OpenTelemetryConfig
from litestar.plugins.opentelemetry.middleware import OpenTelemetryInstrumentationMiddleware
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController

from http_edge.error_contract import document_errors
from orders_core.api.catalog import catalog_router
from orders_core.api.errors import EXCEPTION_HANDLERS, error_body
from orders_core.api.http_metrics import HttpMetrics
from orders_core.api.orders import orders_router, provide_orders
from orders_core.api.rate_limit import RateLimiter, actor_provider, limiter_from_settings
from orders_core.api.strict_schema import StrictStructSchema
from orders_core.application import OrdersApplication
from orders_core.blobs import BlobStore

JSON_BODY_LIMIT = 1024 * 1024
"""Largest request body but a model upload (which has MAX_UPLOAD_BYTES): a 413 before it is read whole."""
METRICS_ROUTE = Router("/", route_handlers=[PrometheusController], include_in_schema=False)
"""/metrics for Prometheus, outside the API's schema (Litestar's controller would document it as JSON)."""
HTTP_METRICS = PrometheusConfig(
    app_name="backbone",
    prefix="backbone_http",
    group_path=True,
    exclude=["/metrics"],
    middleware_class=HttpMetrics,
)
"""Request latency and counts by route template and status code."""
TRACING = OpenTelemetryConfig(exclude=["/metrics", "/health"], exclude_spans=["receive", "send"])
"""A server span per request (the official ASGI instrumentation), continuing a caller's traceparent.

Without the instrumentation's spans of each ASGI message: three more spans a request (the body received,
the response started, the body sent) that say nothing the server span does not, and that cost more to
make and export than the request's own work."""


@get("/health", sync_to_thread=True, operation_id="ReadHealth", tags=["operations"])
def health(
    orders: NamedDependency[OrdersApplication], request: Request[Any, Any, State]
) -> Response[dict[str, Any]]:
    """Answers 200 only while the event store answers; with the read API in the same process (`backbone
    up`), also how each projection stands (`status` is then `degraded` while any is not `ok`)."""
    try:
        position = orders.position()
    except Exception as e:  # any failure to reach the store means not ready
        return Response(
            error_body("unavailable", f"event store unreachable: {type(e).__name__}"), status_code=503
        )
    body: dict[str, Any] = {"status": "ok", "position": position}
    views: Callable[[], dict[str, Any]] | None = request.app.state.get("views_health")
    if views is not None:
        try:
            body.update(views())
        except Exception as e:  # the views' database away: the write side still serves
            body.update(status="degraded", projections=f"unavailable: {type(e).__name__}")
    return Response(body)


@get("/health/ready", sync_to_thread=True, operation_id="ReadReadiness", tags=["operations"])
def ready(orders: NamedDependency[OrdersApplication]) -> Response[dict[str, Any]]:
    """Readiness, for a load balancer: 200 while the event store answers, else 503."""
    try:
        orders.position()
    except Exception as e:
        return Response(
            error_body("unavailable", f"event store unreachable: {type(e).__name__}"), status_code=503
        )
    return Response({"status": "ready"})


@get("/health/live", sync_to_thread=False, operation_id="ReadLiveness", tags=["operations"])
def live() -> dict[str, str]:
    """Liveness: the process serves requests (a restart would not mend an unreachable database)."""
    return {"status": "live"}


def create_app(
    orders: OrdersApplication,
    blobs: BlobStore,
    jwt_secret: str,
    max_upload_bytes: int,
    max_unzipped_bytes: int,
    also: tuple[list[Any], dict[str, Provide], dict[str, Any]] | None = None,
    tracing: type[OpenTelemetryInstrumentationMiddleware] | None = None,
    rate_limit_per_minute: int = 0,
    rate_limited_roles: Iterable[str] = ("partner",),
) -> Litestar:
    """The command API over `orders`, storing uploads in `blobs`; `also` adds another API's routes
    (handlers, dependencies, state) to the same application, as `backbone up` serves both. `tracing`: the
    OpenTelemetry middleware to trace requests with (None: no tracing).

    Each subject of `rate_limited_roles` may make `rate_limit_per_minute` requests a minute to this
    process (0: no limit); the OpenAPI description states it, and the application's Idempotency-Key window."""
    routes, dependencies, state = also or ([], {}, {})
    limiter = limiter_from_settings(rate_limit_per_minute, rate_limited_roles)
    app = Litestar(
        route_handlers=[orders_router, catalog_router, health, ready, live, METRICS_ROUTE, *routes],
        # Tracing only when spans go somewhere: its middleware costs CPU on every request even with a no-op
        # tracer. Given as middleware, not as OpenTelemetryPlugin(config), which ignores `middleware_class`;
        # Litestar still puts it outermost.
        middleware=[
            *([replace(TRACING, middleware_class=tracing).middleware] if tracing else []),
            HTTP_METRICS.middleware,
        ],
        dependencies={
            "actor": Provide(actor_provider(limiter)),
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
        plugins=[StrictStructSchema()],
        logging_config=None,  # the process's own logging set-up stands; Litestar's default would replace it
        request_max_body_size=JSON_BODY_LIMIT,
        openapi_config=OpenAPIConfig(
            title="Alexandrite order backbone API",
            version="1.0.0",
            path="/schema",
            description=_limits(orders.idempotency_window, max_upload_bytes, limiter),
        ),
    )
    document_errors(app, COMMAND_ERRORS, ("/orders", "/catalog"))
    document_errors(app, READ_ERRORS, ("/shop", "/mes"))  # the read API's routes, when served here too
    return app


COMMAND_ERRORS = (400, 401, 403, 404, 409, 413, 415, 422, 429, 503)
READ_ERRORS = (400, 401, 403, 404, 429, 503)


def _limits(idempotency_window: timedelta, max_upload_bytes: int, limiter: RateLimiter | None) -> str:
    """What a partner's client must know of this deployment's limits, for the OpenAPI description."""
    hours = f"{idempotency_window.total_seconds() / 3600:g} hours"
    rate = "No rate limit."
    if limiter is not None:
        roles = " and ".join(sorted(limiter.roles))
        rate = (
            f"Rate limit: {limiter.per_minute} requests a minute per {roles} token subject, counted by each"
            " API process; beyond it 429 with a Retry-After header (seconds)."
        )
    return (
        f"Idempotency-Key: a retry of POST /orders with the same key and body within {hours} of the first"
        " returns the first order (200); after that the key starts a new order."
        f" Request bodies: at most {JSON_BODY_LIMIT} bytes; model uploads at most {max_upload_bytes} bytes"
        f" (413 beyond). {rate}"
    )
