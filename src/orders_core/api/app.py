"""The CRM command API: a Litestar plugin of its routes and the parts they run on, and the application
that serves it on the HTTP edge (with other APIs' plugins beside it, as `backbone up` serves the read API)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from litestar import Litestar
from litestar.config.app import AppConfig
from litestar.di import Provide
from litestar.plugins import InitPlugin
from litestar.plugins.opentelemetry.middleware import OpenTelemetryInstrumentationMiddleware

from http_edge.error_contract import documents_errors
from http_edge.health import Probe, add_probe
from http_edge.plugin import JSON_BODY_LIMIT, EdgeConfig, edge_application
from http_edge.rate_limit import RateLimiter, limit_description
from orders_core.api.catalog import catalog_router
from orders_core.api.orders import orders_router, provide_orders
from orders_core.api.take_next import Dispatcher, Queue, operators_router, orders_next_router
from orders_core.api.webhook_log import webhook_log_router
from orders_core.api.webhooks import webhooks_router
from orders_core.application import OrdersApplication
from orders_core.blobs import BlobStore
from orders_core.resolver import Resolve
from webhook_sender.log import DeliveryLog

COMMAND_ERRORS = (400, 401, 403, 404, 409, 413, 415, 422, 429, 503)


@dataclass(frozen=True)
class CommandApiSettings:
    """What the command API runs on and the limits it keeps."""

    orders: OrdersApplication
    blobs: BlobStore
    """Where model uploads are stored."""
    jwt_secret: str
    max_upload_bytes: int
    max_unzipped_bytes: int
    resolve_webhook_host: Resolve
    """Resolves a webhook URL's host, to check where it leads (orders_core/resolver.py)."""
    allow_private_webhooks: bool = False
    """WEBHOOK_ALLOW_PRIVATE: webhooks may go to loopback and private addresses (tests, local trials)."""
    webhook_log: DeliveryLog | None = None
    """The webhook sender's delivery log, which partners read and replay (None: answered 503)."""
    tracing: type[OpenTelemetryInstrumentationMiddleware] | None = None
    """The middleware to trace requests with (None: no tracing)."""
    limiter: RateLimiter | None = None
    """The rate limit of outside callers (None: no limit)."""
    queue: Queue | None = None
    """The approved orders as the MES view lists them, for take-next (None: take-next answers 503)."""


class CommandApi(InitPlugin):
    """The command API's routes (/orders, /catalog, /webhooks), their dependencies, and the event store's
    health."""

    __slots__ = ("settings",)

    def __init__(self, settings: CommandApiSettings) -> None:
        self.settings = settings
        super().__init__()

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        settings = self.settings
        app_config.route_handlers = [
            *app_config.route_handlers,
            orders_router,
            catalog_router,
            webhooks_router,
            webhook_log_router,
            orders_next_router,
            operators_router,
        ]
        app_config.dependencies["orders"] = Provide(provide_orders, sync_to_thread=False)
        app_config.state.update(
            orders=settings.orders,
            blobs=settings.blobs,
            max_upload_bytes=settings.max_upload_bytes,
            max_unzipped_bytes=settings.max_unzipped_bytes,
            resolve_webhook_host=settings.resolve_webhook_host,
            allow_private_webhooks=settings.allow_private_webhooks,
            webhook_log=settings.webhook_log,
            dispatcher=Dispatcher(settings.orders, settings.queue) if settings.queue else None,
        )
        orders = settings.orders
        add_probe(
            app_config,
            Probe(
                name="event_store",
                dependency="event store",
                report=lambda: {"position": orders.position()},
                ready=orders.position,
            ),
        )
        documents_errors(app_config, COMMAND_ERRORS, ("/orders", "/catalog", "/webhooks", "/operators"))
        return app_config


def create_app(settings: CommandApiSettings, *beside: InitPlugin) -> Litestar:
    """The command API on the HTTP edge; `beside`: other APIs' plugins served by the same application."""
    edge = EdgeConfig(
        title="Alexandrite order backbone API",
        jwt_secret=settings.jwt_secret,
        description=_limits(settings.orders.idempotency_window, settings.max_upload_bytes, settings.limiter)
        + _webhook_urls(settings.allow_private_webhooks),
        tracing=settings.tracing,
        limiter=settings.limiter,
    )
    return edge_application(edge, CommandApi(settings), *beside)


def _limits(idempotency_window: timedelta, max_upload_bytes: int, limiter: RateLimiter | None) -> str:
    """What a partner's client must know of this deployment's limits, for the OpenAPI description."""
    hours = f"{idempotency_window.total_seconds() / 3600:g} hours"
    return (
        f"Idempotency-Key: a retry of POST /orders with the same key and body within {hours} of the first"
        " returns the first order (200); after that the key starts a new order."
        f" Request bodies: at most {JSON_BODY_LIMIT} bytes; model uploads at most {max_upload_bytes} bytes"
        f" (413 beyond). {limit_description(limiter)}"
    )


def _webhook_urls(allow_private: bool) -> str:
    """Where this deployment lets webhooks go, for the OpenAPI description."""
    if allow_private:
        return (
            " Webhook URLs: https, or http to loopback; hosts may resolve to loopback, private and link-local"
            " addresses (WEBHOOK_ALLOW_PRIVATE=1: a test or trial deployment)."
        )
    return " Webhook URLs: https, to hosts that resolve to public addresses only."
