"""Every error leaves as `{"error": code, "detail": text, ...}` with a 4xx that says what was wrong, or a 503
with Retry-After while a database is away; anything else is a logged 500 that says nothing of the inside."""

from __future__ import annotations

from typing import Any

import psycopg
import structlog
from eventsourcing.persistence import InterfaceError, OperationalError
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import ExceptionHandlersMap

log = structlog.get_logger("api")

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "too_many_requests",
    503: "unavailable",
}


def error_body(code: str, detail: str, **extra: Any) -> dict[str, Any]:
    """The one shape every error body has."""
    return {"error": code, "detail": detail, **extra}


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    status = exc.status_code
    if status >= 500 and status != 503:  # 503 is a deliberate "not yet, retry" (a view behind), not a fault
        return _unexpected(request, exc)
    extra: dict[str, Any] = {}
    if isinstance(exc, ValidationException) and exc.extra:
        extra["problems"] = exc.extra
    elif isinstance(exc.extra, dict):
        extra.update(exc.extra)
    code = HTTP_CODES.get(status, "client_error")
    detail = _too_large(request) if isinstance(exc, RequestEntityTooLarge) else exc.detail
    return Response(error_body(code, detail, **extra), status_code=status, headers=exc.headers)


def _too_large(request: Request[Any, Any, Any]) -> str:
    # Litestar's own detail ("Request Entity Too Large") does not say what the limit is.
    limit = request.route_handler.resolve_request_max_body_size()
    return (
        f"the request body is larger than the {limit} bytes allowed for {request.method} {request.url.path}"
    )


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    log.exception("unhandled error", path=request.url.path, method=request.method)
    return Response(
        error_body("internal", "an unexpected error occurred; it has been logged"),
        status_code=HTTP_500_INTERNAL_SERVER_ERROR,
    )


def _database_unavailable(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    # The database is restarting or failing over (the event store's library has already retried a while):
    # a fault of the moment, not of the request. Whether an append whose connection broke was committed is
    # unknown here: a client that sends the command again gets the order (a create with its
    # Idempotency-Key) or a 409 naming the status it reached. The pool drops a broken connection, so the
    # retry gets a fresh one.
    log.warning("database unavailable", path=request.url.path, method=request.method, error=repr(exc))
    detail = f"the database is unavailable ({type(exc).__name__}); retry shortly"
    return Response(error_body("unavailable", detail), status_code=503, headers={"Retry-After": "1"})


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    HTTPException: _http_error,
    OperationalError: _database_unavailable,
    InterfaceError: _database_unavailable,
    psycopg.OperationalError: _database_unavailable,
    Exception: _unexpected,
}
