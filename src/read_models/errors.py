"""Errors of the read API, in the one shape every API of the system uses: {"error", "detail", ...}."""

from __future__ import annotations

from typing import Any

import psycopg
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.types import ExceptionHandlersMap

log = structlog.get_logger("read_api")

CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 503: "unavailable"}


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    if exc.status_code >= 500 and exc.status_code != 503:
        return _unexpected(request, exc)
    body: dict[str, Any] = {"error": CODES.get(exc.status_code, "client_error"), "detail": exc.detail}
    if isinstance(exc, ValidationException) and exc.extra:
        body["problems"] = exc.extra
    return Response(body, status_code=exc.status_code, headers=exc.headers)


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    log.exception("unhandled error", path=request.url.path)
    return Response(
        {"error": "internal", "detail": "an unexpected error occurred; it has been logged"}, status_code=500
    )


def _database_unavailable(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    # A restarting or failing-over database is a fault of the moment, not of the request: say so, and
    # when to retry. The pool drops the broken connection, so the retry gets a fresh one.
    log.warning("database unavailable", path=request.url.path, error=repr(exc))
    body = {"error": "unavailable", "detail": f"the database is unavailable ({type(exc).__name__}); retry"}
    return Response(body, status_code=503, headers={"Retry-After": "1"})


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    HTTPException: _http_error,
    psycopg.OperationalError: _database_unavailable,
    Exception: _unexpected,
}
