"""The fold of order events into one flat row per order: what both the shop and the MES views hold.

Pure: a row is a plain dict, events are `StoredEvent`s; timestamps stay ISO strings until PostgreSQL parses
them, so replaying a million events spends no time building datetimes it does not need.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from orders_core.contracts import BY_EVENT, PROMISE_SETTLED, STATUS_LIMITS, StoredEvent

OrderRow = dict[str, Any]

ORDER_COLUMNS: tuple[str, ...] = (
    "order_id", "number", "channel", "owner_id", "contact_name", "item_title", "material_code", "quantity",
    "status", "version", "position", "created_at", "updated_at", "status_since", "stuck_at", "approved_at",
    "promised_date", "promise_open", "operator_id", "model_sha256", "model_filename", "model_format",
    "model_size_bytes", "triangle_count", "quote_total_minor", "currency", "quote", "carrier",
    "tracking_number", "rejection_reason", "cancellation_reason", "status_times",
)  # fmt: skip
"""Columns of a folded order row, in the order the MES table declares them."""

NEVER = "-infinity"
"""approved_at of an order that was never approved: sorts after every real time, newest first."""


def fold_order(
    row: OrderRow | None, event: StoredEvent, order_id: str, version: int, position: int
) -> OrderRow:
    """The row after `event`; `row` is None only before OrderInitiated. Mutates and returns `row`."""
    f = event.fields
    stamp = event.timestamp
    if row is None:
        row = _initiated(order_id, f, stamp)
    target = BY_EVENT[event.name].target
    row["status"] = target.value
    row["version"] = version
    row["position"] = position
    row["updated_at"] = stamp
    row["status_since"] = stamp
    row["status_times"][target.value] = stamp
    limit = STATUS_LIMITS.get(target)
    row["stuck_at"] = (datetime.fromisoformat(stamp) + limit).isoformat() if limit else None
    _FIELDS.get(event.name, _nothing)(row, f, stamp)
    row["promise_open"] = row["promised_date"] is not None and target not in PROMISE_SETTLED
    return row


def _initiated(order_id: str, f: dict[str, Any], stamp: str) -> OrderRow:
    row = dict.fromkeys(ORDER_COLUMNS)
    row.update(
        order_id=order_id,
        number=f["number"],
        channel=f["channel"],
        owner_id=f["owner_id"],
        contact_name=f["contact_name"],
        item_title=f["item_title"],
        material_code=f["material_code"],
        quantity=f["quantity"],
        created_at=stamp,
        approved_at=NEVER,
        promised_date=f.get("promised_date"),
        status_times={},
    )
    return row


def _nothing(row: OrderRow, f: dict[str, Any], stamp: str) -> None:
    pass


def _model_attached(row: OrderRow, f: dict[str, Any], stamp: str) -> None:
    model = f["model"]
    row.update(
        model_sha256=model["sha256"],
        model_filename=model["filename"],
        model_format=model["format"],
        model_size_bytes=model["size_bytes"],
        triangle_count=model.get("triangle_count"),
        quote=None,
        quote_total_minor=None,
        currency=None,
        rejection_reason=None,
    )


def _submitted(row: OrderRow, f: dict[str, Any], stamp: str) -> None:
    row["promised_date"] = f["promised_date"]


def _priced(row: OrderRow, f: dict[str, Any], stamp: str) -> None:
    quote = f["quote"]
    row.update(
        quote=quote,
        quote_total_minor=quote["total_minor"],
        currency=quote["currency"],
        triangle_count=quote["figures"]["triangle_count"],
    )


def _rejected(row: OrderRow, f: dict[str, Any], stamp: str) -> None:
    row["rejection_reason"] = f["reason"]


def _approved(row: OrderRow, f: dict[str, Any], stamp: str) -> None:
    row["approved_at"] = stamp


def _taken(row: OrderRow, f: dict[str, Any], stamp: str) -> None:
    row["operator_id"] = f["operator_id"]


def _shipped(row: OrderRow, f: dict[str, Any], stamp: str) -> None:
    row.update(carrier=f["carrier"], tracking_number=f["tracking_number"])


def _cancelled(row: OrderRow, f: dict[str, Any], stamp: str) -> None:
    row["cancellation_reason"] = f["reason"]


_FIELDS = {
    "ModelAttached": _model_attached,
    "OrderSubmitted": _submitted,
    "PriceCalculated": _priced,
    "ModelRejected": _rejected,
    "ManufacturingApproved": _approved,
    "ManufacturingStarted": _taken,
    "OrderShipped": _shipped,
    "OrderCancelled": _cancelled,
}
