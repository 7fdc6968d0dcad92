"""What a command returns: accepted with the store position it reached, or refused with a reason."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from orders_core.lifecycle import Status

T = TypeVar("T")


class Refused(enum.StrEnum):
    """Why a command was refused; the API maps each to one HTTP status."""

    FORBIDDEN = "forbidden"
    NOT_ALLOWED = "not_allowed"
    INVALID = "invalid"
    NOT_FOUND = "not_found"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    QUOTE_EXPIRED = "quote_expired"


@dataclass(frozen=True)
class Refusal:
    """A refused command: the code, a reason a person can read, and where the order stands."""

    code: Refused
    reason: str
    status: Status | None = None
    allowed: tuple[str, ...] = ()
    details: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Accepted(Generic[T]):
    """A command that took effect (or was already in effect): the resulting state and store position."""

    value: T
    position: int
    replayed: bool = False
