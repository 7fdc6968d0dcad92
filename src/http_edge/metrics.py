"""Request latency and counts by route template and status: Litestar's Prometheus series, for less CPU.

Litestar's `PrometheusMiddleware` builds a `Request`, parses the URL, merges label dicts and looks up
each labelled child under the metric's lock, four times per request; at a thousand requests a second
that is a tenth of the API's CPU. This subclass records the same series with the same labels (so
dashboards and alerts see no difference), keeping each route's labelled children once they exist.
"""

from __future__ import annotations

import time
from typing import Any

from litestar import Router
from litestar.enums import ScopeType
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController, PrometheusMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

_Children = tuple[Any, Any, Any]
"""A route's labelled request counter, duration histogram and (for 5xx) error counter."""


class HttpMetrics(PrometheusMiddleware):
    """`PrometheusMiddleware` for HTTP requests, with labelled children kept per route and status."""

    def __init__(self, app: ASGIApp, config: PrometheusConfig) -> None:
        super().__init__(app, config)
        # Children are kept per route template: by raw path they would grow with every order id.
        self._lean = config.group_path and not (
            config.labels or config.exemplars or config.excluded_http_methods
        )
        self._in_progress: dict[tuple[str, str], Any] = {}
        self._done: dict[tuple[str, str, int], _Children] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or not self._lean:  # what this class does not special-case
            await super().__call__(scope, receive, send)
            return
        method: str = scope["method"]
        path: str = scope["path_template"]
        started = time.perf_counter()
        status = 200  # as Litestar's: a response that never started counts as 200
        ended = 0.0

        async def timed_send(message: Message) -> None:
            nonlocal status, ended
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                ended = time.perf_counter()
            await send(message)

        in_progress = self._in_progress.get((method, path))
        if in_progress is None:
            in_progress = self._in_progress[method, path] = self._child(
                self.requests_in_progress, method, path
            )
        in_progress.inc()
        try:
            await self.app(scope, receive, timed_send)
        finally:
            in_progress.dec()
            children = self._done.get((method, path, status))
            if children is None:
                children = self._done[method, path, status] = (
                    self._child(self.request_count, method, path, status),
                    self._child(self.request_time, method, path, status),
                    self._child(self.requests_error_count, method, path, status) if status >= 500 else None,
                )
            count, duration, errors = children
            count.inc()
            duration.observe(ended - started if ended else 0.0)
            if errors is not None:
                errors.inc()

    def _child(self, family: Any, method: str, path: str, status: int = 200) -> Any:
        labels: dict[str, str | int | float] = {
            "method": method,
            "path": path,
            "status_code": status,
            "app_name": self._config.app_name,
        }
        return family(labels).labels(*labels.values())


HTTP_METRICS = PrometheusConfig(
    app_name="backbone",
    prefix="backbone_http",
    group_path=True,
    exclude=["/metrics"],
    middleware_class=HttpMetrics,
)
"""Request latency and counts by route template and status code."""
METRICS_ROUTE = Router("/", route_handlers=[PrometheusController], include_in_schema=False)
"""/metrics for Prometheus, outside the API's schema (Litestar's controller would document it as JSON)."""
