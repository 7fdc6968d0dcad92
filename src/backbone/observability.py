"""Logs for every process: structlog, JSON when the output is not a terminal, readable on a terminal.

Standard-library loggers (uvicorn, psycopg, aio-pika, eventsourcing) go through the same renderer, so a
log shipper sees one format. Context bound with `structlog.contextvars` (order id, correlation id, trace
id) lands on every line logged while it is bound.
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
    for noisy in ("httpx", "aiormq", "aio_pika", "psycopg.pool", "uvicorn.access", "yoyo"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def _keep(logger: object, method: str, event: structlog.types.EventDict) -> structlog.types.EventDict:
    return event
