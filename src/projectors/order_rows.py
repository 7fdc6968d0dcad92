"""The fold of order events into one flat row per order: what both the shop and the MES views hold.

Pure: a row is a plain dict; events are typed per kind (msgspec Structs), decoded either straight from the
stored JSON (replays: `EVENT_KINDS`, one decoder per topic) or converted from a `StoredEvent`'s fields (live
batches: `fold_order`). Both feed the same `fold_event`, so a replay and the live projection cannot
disagree. Timestamps stay ISO strings until PostgreSQL parses them, so replaying a million events spends no
time building datetimes it does not need.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from orders_core.contracts import (
    BY_EVENT,
    EXPECTED_MANUFACTURING,
    ORDER_TOPIC,
    PROMISE_SETTLED,
    QUOTE_VALIDITY,
    STATUS_LIMITS,
    StoredEvent,
)

OrderRow = dict[str, Any]

ORDER_COLUMNS: tuple[str, ...] = (
    "order_id", "number", "channel", "owner_id", "contact_name", "item_title", "material_code", "quantity",
    "status", "version", "position", "created_at", "updated_at", "status_since", "stuck_at", "approved_at",
    "promised_date", "promise_open", "operator_id", "model_sha256", "model_filename", "model_format",
    "model_size_bytes", "triangle_count", "quote_total_minor", "currency", "quote", "carrier",
    "tracking_number", "rejection_reason", "cancellation_reason", "status_times", "quote_valid_until",
    "start_by", "due_at", "held_since", "hold_reason", "preview_sha256",
)  # fmt: skip
"""Columns of a folded order row, in the order the MES table declares them."""

NEVER = "-infinity"
"""approved_at of an order that was never approved: sorts after every real time, newest first."""
NO_PROMISE = "infinity"
"""start_by and due_at of an order with no open promise: sorts after every real time, most urgent first."""

Expected = Mapping[str, timedelta]
"""How long manufacturing is expected to take, by material code (EXPECTED_MANUFACTURING for others)."""

_LIMITS: dict[str, timedelta] = {status.value: limit for status, limit in STATUS_LIMITS.items()}
_SETTLED = frozenset(status.value for status in PROMISE_SETTLED)


class Tagged(msgspec.Struct):
    """A value the event store's transcoder stored with its type: `{"_type_": ..., "_data_": "..."}`."""

    data: str = msgspec.field(name="_data_")


Text = str | Tagged
"""An ISO date or time: tagged as stored, or already plain (a `StoredEvent`'s fields are unwrapped)."""


def _text(value: Text) -> str:
    return value if isinstance(value, str) else value.data


class OrderEvent(msgspec.Struct, kw_only=True):
    """What every order event carries that the fold reads; kinds below add their own fields.

    Unknown fields (actor, meta, ...) are skipped by the decoder without being built.
    """

    timestamp: Text

    def fields_into(self, row: OrderRow, stamp: str) -> None:
        """Write the columns this kind of event changes, besides the status and its times."""


class OrderInitiated(OrderEvent, kw_only=True):
    number: str
    channel: str
    owner_id: str
    contact_name: str
    item_title: str
    material_code: str
    quantity: int
    promised_date: Text | None = None

    def new_row(self, order_id: str, stamp: str) -> OrderRow:
        """The row of a new order, every other column empty."""
        row = dict.fromkeys(ORDER_COLUMNS)
        row.update(
            order_id=order_id,
            number=self.number,
            channel=self.channel,
            owner_id=self.owner_id,
            contact_name=self.contact_name,
            item_title=self.item_title,
            material_code=self.material_code,
            quantity=self.quantity,
            created_at=stamp,
            approved_at=NEVER,
            promised_date=None if self.promised_date is None else _text(self.promised_date),
            status_times={},
        )
        return row


class ModelRef(msgspec.Struct):
    """The fields of a stored `ModelFile` the views show."""

    sha256: str
    filename: str
    format: str
    size_bytes: int
    triangle_count: int | None = None


class ModelAttached(OrderEvent, kw_only=True):
    model: ModelRef

    def fields_into(self, row: OrderRow, stamp: str) -> None:
        model = self.model
        row.update(
            model_sha256=model.sha256,
            model_filename=model.filename,
            model_format=model.format,
            model_size_bytes=model.size_bytes,
            triangle_count=model.triangle_count,
            quote=None,
            quote_total_minor=None,
            currency=None,
            quote_valid_until=None,
            rejection_reason=None,
            preview_sha256=None,
        )


class OrderSubmitted(OrderEvent, kw_only=True):
    promised_date: Text

    def fields_into(self, row: OrderRow, stamp: str) -> None:
        row["promised_date"] = _text(self.promised_date)


class PriceCalculated(OrderEvent, kw_only=True):
    quote: dict[str, Any]
    """Kept as plain JSON: the views store the whole quote."""

    def fields_into(self, row: OrderRow, stamp: str) -> None:
        quote = self.quote
        if quote.get("valid_until") is None:  # recorded before quotes had terms: as the order reads it
            valid_until = datetime.fromisoformat(stamp) + QUOTE_VALIDITY
            quote = {**quote, "valid_until": valid_until.isoformat()}
        row.update(
            quote=quote,
            quote_total_minor=quote["total_minor"],
            currency=quote["currency"],
            quote_valid_until=quote["valid_until"],
            triangle_count=quote["figures"]["triangle_count"],
            preview_sha256=quote.get("preview_sha256"),
        )


class RepriceRequested(OrderEvent, kw_only=True):
    def fields_into(self, row: OrderRow, stamp: str) -> None:
        # Being priced again: the old price is no longer on offer (the order's history keeps it).
        row.update(quote=None, quote_total_minor=None, currency=None, quote_valid_until=None)


class ModelRejected(OrderEvent, kw_only=True):
    reason: str
    preview_sha256: str | None = None

    def fields_into(self, row: OrderRow, stamp: str) -> None:
        row["rejection_reason"] = self.reason
        row["preview_sha256"] = self.preview_sha256


class ManufacturingApproved(OrderEvent, kw_only=True):
    def fields_into(self, row: OrderRow, stamp: str) -> None:
        row["approved_at"] = stamp


class ManufacturingStarted(OrderEvent, kw_only=True):
    operator_id: str

    def fields_into(self, row: OrderRow, stamp: str) -> None:
        row["operator_id"] = self.operator_id


class OrderShipped(OrderEvent, kw_only=True):
    carrier: str
    tracking_number: str

    def fields_into(self, row: OrderRow, stamp: str) -> None:
        row["carrier"] = self.carrier
        row["tracking_number"] = self.tracking_number


class OrderCancelled(OrderEvent, kw_only=True):
    reason: str

    def fields_into(self, row: OrderRow, stamp: str) -> None:
        row.update(cancellation_reason=self.reason, held_since=None, hold_reason=None)


class OrderHeld(OrderEvent, kw_only=True):
    reason: str

    def fields_into(self, row: OrderRow, stamp: str) -> None:
        row.update(held_since=stamp, hold_reason=self.reason)


class OrderReleased(OrderEvent, kw_only=True):
    def fields_into(self, row: OrderRow, stamp: str) -> None:
        row.update(held_since=None, hold_reason=None)


_TYPES: dict[str, type[OrderEvent]] = {
    cls.__name__: cls
    for cls in (
        OrderInitiated,
        ModelAttached,
        OrderSubmitted,
        PriceCalculated,
        RepriceRequested,
        ModelRejected,
        ManufacturingApproved,
        ManufacturingStarted,
        OrderShipped,
        OrderCancelled,
        OrderHeld,
        OrderReleased,
    )
}


class EventKind(msgspec.Struct, frozen=True):
    """One kind of order event: its Struct, a decoder of its stored JSON, and the status it leads to."""

    cls: type[OrderEvent]
    decode: Callable[[bytes], OrderEvent]
    target: str | None
    """None: the order stays in its status (a hold, a release)."""


def _kind(name: str) -> EventKind:
    cls = _TYPES.get(name, OrderEvent)
    target = BY_EVENT[name].target
    return EventKind(cls, msgspec.json.Decoder(cls).decode, target.value if target else None)


EVENT_KINDS: dict[str, EventKind] = {f"{ORDER_TOPIC}.{name}": _kind(name) for name in BY_EVENT}
"""Every order event kind by its stored topic; a topic not in here is one the order views ignore."""
_BY_NAME = {name: EVENT_KINDS[f"{ORDER_TOPIC}.{name}"] for name in BY_EVENT}


def fold_event(
    row: OrderRow | None, event: OrderEvent, target: str | None, order_id: str, version: int, position: int
) -> OrderRow:
    """The row after `event`, which leads to status `target` (None: stays in its own); `row` is None only
    before OrderInitiated. A hold or a release starts a stay of its own in the same status (`status_since`),
    so that the time on hold is told apart from the time waiting.

    Writes only the columns the event changes and leaves the derived ones (`finish_row`) as they were:
    a replay derives them once per order instead of once per event. Mutates and returns `row`.
    """
    stamp = event.timestamp
    if not isinstance(stamp, str):  # inline _text: this runs once per event of a replay
        stamp = stamp.data
    if row is None:
        if not isinstance(event, OrderInitiated):
            raise ValueError(f"order {order_id} starts with {type(event).__name__}, not OrderInitiated")
        row = event.new_row(order_id, stamp)
    if target is not None:
        row["status"] = target
        row["status_times"][target] = stamp
    row["version"] = version
    row["position"] = position
    row["updated_at"] = stamp
    row["status_since"] = stamp
    event.fields_into(row, stamp)
    return row


def finish_row(row: OrderRow, expected: Expected | None = None) -> OrderRow:
    """Derive the columns that follow from the others: when the order gets stuck, if its promise is open,
    and by when manufacturing must start to keep it (`expected`: manufacturing time by material)."""
    status = row["status"]
    limit = _LIMITS.get(status)
    # an order on hold waits by decision, not by neglect: never stuck while held
    row["stuck_at"] = (
        (datetime.fromisoformat(row["status_since"]) + limit).isoformat()
        if limit and row["held_since"] is None
        else None
    )
    row["promise_open"] = row["promised_date"] is not None and status not in _SETTLED
    row["start_by"] = start_by(row, expected)
    row["due_at"] = due_at(row)
    return row


def due_at(row: OrderRow) -> str:
    """The end of the order's promised day (UTC), when its promise is open."""
    if not row["promise_open"]:
        return NO_PROMISE
    return (datetime.fromisoformat(row["promised_date"]).replace(tzinfo=UTC) + timedelta(days=1)).isoformat()


def start_by(row: OrderRow, expected: Expected | None = None) -> str:
    """The latest start of manufacturing that keeps the order's promise: the end of its promised day (UTC)
    less the expected manufacturing time of its material. The slack is this less now."""
    if not row["promise_open"]:
        return NO_PROMISE
    needs = (expected or {}).get(row["material_code"], EXPECTED_MANUFACTURING)
    return (datetime.fromisoformat(due_at(row)) - needs).isoformat()


def fold_order(
    row: OrderRow | None,
    event: StoredEvent,
    order_id: str,
    version: int,
    position: int,
    expected: Expected | None = None,
) -> OrderRow:
    """The row after a decoded stored event (the live path); `row` is None only before OrderInitiated."""
    kind = _BY_NAME[event.name]
    typed = msgspec.convert(event.fields, kind.cls)
    return finish_row(fold_event(row, typed, kind.target, order_id, version, position), expected)


def expected_manufacturing(material: Mapping[str, object]) -> timedelta | None:
    """A stored material's manufacturing estimate (`manufacturing_hours`), None when it gives none."""
    hours = material.get("manufacturing_hours")
    if not isinstance(hours, int | float):
        return None
    # whole seconds, at least one: the projection re-derives start_by in SQL from the same figure, to the
    # microsecond, and its table takes only a positive time (a schemathesis run once sent 1e-5 hours)
    return timedelta(seconds=max(1, round(float(hours) * 3600)))
