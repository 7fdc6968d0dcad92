"""A refused command as its HTTP answer: the status it maps to, the reason, and, for a command not allowed
in the order's status, that status and the commands allowed now."""

from __future__ import annotations

from typing import Any

from litestar import Response

from http_edge.errors import error_body
from orders_core.outcomes import Refusal, Refused

REFUSAL_STATUS = {
    Refused.FORBIDDEN: 403,
    Refused.NOT_FOUND: 404,
    Refused.NOT_ALLOWED: 409,
    Refused.INVALID: 422,
    Refused.IDEMPOTENCY_KEY_REUSED: 422,
    Refused.QUOTE_EXPIRED: 409,
}


def refusal_response(refusal: Refusal) -> Response[dict[str, Any]]:
    """A refused command as its HTTP answer."""
    extra: dict[str, Any] = dict(refusal.details)
    if refusal.status is not None:
        extra["status"] = refusal.status.value
        extra["allowed"] = list(refusal.allowed)
    return Response(
        error_body(refusal.code.value, refusal.reason, **extra), status_code=REFUSAL_STATUS[refusal.code]
    )
