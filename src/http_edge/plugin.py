"""The HTTP edge every API process shares, as one Litestar plugin (laid out as Litestar's own
`plugins.prometheus` and `plugins.opentelemetry`: a config, the middleware, the plugin).

`HttpEdge(EdgeConfig(...))` gives an application: a traced server span per request, HTTP metrics and
/metrics, /health (over the probes its parts register), the bearer-token `actor` dependency with the
partner rate limit, the error answers, the body size limit and the OpenAPI document. The APIs themselves
are plugins too (`orders_core.api.app.CommandApi`, `read_models.api.ReadApi`): a process serves whichever
it is given.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from litestar import Litestar
from litestar.config.app import AppConfig
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.plugins import InitPlugin
from litestar.plugins.opentelemetry import OpenTelemetryConfig
from litestar.plugins.opentelemetry.middleware import OpenTelemetryInstrumentationMiddleware

from http_edge.errors import EXCEPTION_HANDLERS
from http_edge.health import HEALTH_ROUTES
from http_edge.metrics import HTTP_METRICS, METRICS_ROUTE
from http_edge.rate_limit import RateLimiter, actor_provider
from http_edge.strict_schema import StrictStructSchema

JSON_BODY_LIMIT = 1024 * 1024
"""Largest request body but a model upload (which has MAX_UPLOAD_BYTES): a 413 before it is read whole."""
TRACING = OpenTelemetryConfig(
    exclude=["/metrics"], exclude_opt_key="untraced", exclude_spans=["receive", "send"]
)
"""A server span per request (the official ASGI instrumentation), continuing a caller's traceparent; not for
routes whose `opt` says `untraced` (health checks, the MES change stream).

Without the instrumentation's spans of each ASGI message: three more spans a request (the body received,
the response started, the body sent) that say nothing the server span does not, and that cost more to
make and export than the request's own work."""


@dataclass(frozen=True)
class EdgeConfig:
    """What the HTTP edge of one API process is set up with."""

    title: str
    """The OpenAPI document's title."""
    jwt_secret: str
    """The HS256 key bearer tokens are verified with."""
    description: str = ""
    """The OpenAPI document's description: the limits a client must know."""
    tracing: type[OpenTelemetryInstrumentationMiddleware] | None = None
    """The middleware to trace requests with; None: no tracing (its middleware costs CPU on every request
    even with a no-op tracer, so only when spans go somewhere)."""
    limiter: RateLimiter | None = None
    """The rate limit of outside callers; None: no limit."""


class HttpEdge(InitPlugin):
    """The HTTP edge of an API process (see the module's description)."""

    __slots__ = ("config",)

    def __init__(self, config: EdgeConfig) -> None:
        self.config = config
        super().__init__()

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        config = self.config
        app_config.route_handlers = [*app_config.route_handlers, *HEALTH_ROUTES, METRICS_ROUTE]
        # Given as middleware, not as OpenTelemetryPlugin(config), which ignores `middleware_class`;
        # Litestar still puts it outermost.
        tracing = [replace(TRACING, middleware_class=config.tracing).middleware] if config.tracing else []
        app_config.middleware = [*tracing, HTTP_METRICS.middleware, *app_config.middleware]
        app_config.dependencies["actor"] = Provide(actor_provider(config.limiter))
        app_config.state["jwt_secret"] = config.jwt_secret
        app_config.exception_handlers = {**EXCEPTION_HANDLERS, **app_config.exception_handlers}
        # Right after this plugin: before Litestar's own schema plugins, which it appends to the application's
        # (the first plugin that takes a type documents it); after this one, so Litestar's loop over the list
        # does not meet this plugin twice.
        app_config.plugins.insert(app_config.plugins.index(self) + 1, StrictStructSchema())
        app_config.logging_config = None  # the process's logging set-up stands; Litestar's would replace it
        app_config.openapi_config = OpenAPIConfig(
            title=config.title, version="1.0.0", path="/schema", description=config.description or None
        )
        return app_config


def edge_application(config: EdgeConfig, *parts: InitPlugin) -> Litestar:
    """An application of the APIs `parts` on the HTTP edge `config`."""
    # The body limit is given here: Litestar 2.25 reads it from its own argument, not from the AppConfig a
    # plugin's on_app_init returns.
    return Litestar(plugins=[HttpEdge(config), *parts], request_max_body_size=JSON_BODY_LIMIT)
