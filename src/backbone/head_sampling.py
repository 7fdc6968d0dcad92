"""Tracing that costs a request only when its trace is kept: the sampling decision made before the
official ASGI instrumentation runs.

The official middleware (opentelemetry-instrumentation-asgi) does its work (request attributes, URL
redaction, a span, a wrapped `send`) on every request, also the ones the sampler then drops: with nothing
sampled, a quarter of the command API's throughput (bench/commands.py). `HeadSampledTracing` asks the
tracer provider's own sampler first, with the caller's traceparent and the trace id the request's span
will have. Requests whose trace is kept go through the official middleware, which gets that same trace id
from `PresetTraceIds` and so takes the same decision; the others run under a non-recording span of the
same trace id, so logs, the stored events and the AMQP headers still carry the trace (and its "not
sampled" flag) downstream.
"""

from __future__ import annotations

import contextvars
from typing import Any, cast

from litestar.enums import ScopeType
from litestar.plugins.opentelemetry import OpenTelemetryConfig
from litestar.plugins.opentelemetry.middleware import OpenTelemetryInstrumentationMiddleware
from litestar.types import ASGIApp, HTTPScope, Message, Receive, Scope, Send
from opentelemetry import context, propagate, trace
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
from opentelemetry.instrumentation.asgi import asgi_getter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.sdk.trace.sampling import Decision, Sampler
from opentelemetry.semconv.attributes.http_attributes import HTTP_ROUTE

RANDOM_TRACE_ID = 0x02
_PRESET: contextvars.ContextVar[int] = contextvars.ContextVar("preset_trace_id", default=0)


class PresetTraceIds(IdGenerator):
    """Random ids, except the trace id a request's sampling was decided on, which its root span takes."""

    def __init__(self) -> None:
        self._random = RandomIdGenerator()

    def generate_span_id(self) -> int:
        return self._random.generate_span_id()

    def generate_trace_id(self) -> int:
        preset = _PRESET.get()
        if preset:
            _PRESET.set(0)  # one root span per request takes it; any later root span gets its own
            return preset
        return self._random.generate_trace_id()

    def is_trace_id_random(self) -> bool:
        return True


class HeadSampledTracing(OpenTelemetryInstrumentationMiddleware):
    """The official ASGI instrumentation for the requests whose trace the sampler keeps; a non-recording
    span of the same trace for the rest. Falls back to the official middleware for every request when the
    tracer provider is not an SDK provider with `PresetTraceIds`."""

    def __init__(self, app: ASGIApp, config: OpenTelemetryConfig) -> None:
        super().__init__(app, config)
        self._next = app
        provider = config.tracer_provider or trace.get_tracer_provider()
        self._head: tuple[Sampler, PresetTraceIds] | None = None
        self._fields = frozenset(f.lower().encode() for f in propagate.get_global_textmap().fields)
        if isinstance(provider, TracerProvider) and isinstance(provider.id_generator, PresetTraceIds):
            self._head = (provider.sampler, provider.id_generator)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._head is None or scope["type"] != ScopeType.HTTP:
            await self.open_telemetry_middleware(scope, receive, send)  # type: ignore[arg-type]
            return
        sampler, ids = self._head
        # Most requests carry no trace context: the propagators' header lookups are skipped for them.
        fields = self._fields
        if any(name in fields for name, _ in scope["headers"]):
            parent = propagate.extract(cast("dict[str, Any]", scope), getter=asgi_getter)
        else:
            parent = context.get_current()
        caller = trace.get_current_span(parent).get_span_context()
        trace_id = caller.trace_id if caller.is_valid else ids.generate_trace_id()
        decision = sampler.should_sample(parent, trace_id, "HTTP", trace.SpanKind.SERVER)
        if decision.decision is not Decision.DROP:
            preset = _PRESET.set(trace_id)
            try:
                await self.open_telemetry_middleware(scope, receive, _named_by_route(scope, send))  # type: ignore[arg-type]
            finally:
                _PRESET.reset(preset)
            return
        # Not sampled; the W3C "random trace id" flag as the SDK would set it (kept from a caller's context).
        random = caller.trace_flags & RANDOM_TRACE_ID
        span = trace.NonRecordingSpan(
            trace.SpanContext(
                trace_id,
                ids.generate_span_id(),
                is_remote=False,
                trace_flags=trace.TraceFlags(random if caller.is_valid else RANDOM_TRACE_ID),
                trace_state=decision.trace_state,
            )
        )
        # Nothing under an unsampled request is recorded (the sampler follows its parent): its database
        # statements skip the psycopg instrumentation altogether rather than make spans nobody keeps.
        unsampled = context.set_value(
            _SUPPRESS_INSTRUMENTATION_KEY, True, trace.set_span_in_context(span, parent)
        )
        token = context.attach(unsampled)
        try:
            await self._next(scope, receive, send)
        finally:
            context.detach(token)


def _named_by_route(scope: Scope, send: Send) -> Send:
    """`send`, naming the request's span by its route template once routed ("POST /orders/{order_id}/cancel"):
    the instrumentation names it by the raw path, a new name for every order."""

    async def named(message: Message) -> None:
        if message["type"] == "http.response.start" and (template := scope.get("path_template")):
            span = trace.get_current_span()
            route = f"{cast('HTTPScope', scope)['method']} {template}"
            span.update_name(route)
            span.set_attribute(HTTP_ROUTE, template)
        await send(message)

    return named
