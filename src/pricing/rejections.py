"""Why a model cannot be priced, in words a customer can act on."""

from __future__ import annotations

import enum

import msgspec


class Reason(enum.StrEnum):
    """The kinds of unpriceable model; stable codes for machines, beside the customer's text."""

    UNREADABLE = "unreadable"
    FILE_TOO_LARGE = "file_too_large"
    TOO_MANY_TRIANGLES = "too_many_triangles"
    NOT_WATERTIGHT = "not_watertight"
    ZERO_VOLUME = "zero_volume"
    INVERTED = "inverted"
    TOO_LARGE_FOR_FLASK = "too_large_for_flask"
    TOO_THIN = "too_thin"
    TIME_LIMIT = "time_limit"


class Rejection(msgspec.Struct, frozen=True, kw_only=True):
    """A model that cannot be made or priced: the reason code and a sentence for the customer."""

    reason: Reason
    detail: str
