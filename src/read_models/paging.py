"""Keyset pages of the read API: the opaque cursor a page hands out, and reading it back.

A cursor names the sort it belongs to, the sort key and the order id of the last row shown; the next page
starts after that row. Shared by the MES table (`mes.py`) and a customer's shop orders (`shop.py`).
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from uuid import UUID

import msgspec


class BadQuery(ValueError):
    """A filter, cursor or limit that cannot be served; the message says which and why."""


def encode_cursor(sort: str, key: str, order_id: str) -> str:
    """An opaque cursor for the row after which the next page of sort `sort` starts."""
    return base64.urlsafe_b64encode(msgspec.json.encode([sort, key, order_id])).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str) -> tuple[str, str]:
    """The (sort key, order id) a cursor of sort `sort` points after; BadQuery if it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        sort_name, key, order_id = msgspec.json.decode(raw, type=tuple[str, str, str])
        UUID(order_id)
        if key not in ("-infinity", "infinity"):  # never approved; no open promise
            datetime.fromisoformat(key)
    except (binascii.Error, msgspec.DecodeError, ValueError) as e:
        raise BadQuery("malformed cursor: pass back the next_cursor of a previous page") from e
    if sort_name != sort:
        raise BadQuery(f"this cursor belongs to sort={sort_name}, not sort={sort}")
    return key, order_id
