"""The read API's response bodies: what the shop and the MES views answer, as the OpenAPI documents say.

The queries return rows as dicts; these types are what leaves (`msgspec.convert` checks every row against
them on the way out), so a generated client gets named models, not `{}`.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal
from uuid import UUID

import msgspec

from orders_core.contracts import Quote, Status


class ShopMaterial(msgspec.Struct, kw_only=True):
    """A material the shop sells, at today's price per gram."""

    code: str
    name: str
    density_g_cm3: float
    price_per_gram_minor: int


class ShopProduct(msgspec.Struct, kw_only=True):
    """A ready-made product at its price."""

    sku: str
    title: str
    material_code: str
    price_minor: int
    description: str


class ShopCatalog(msgspec.Struct, kw_only=True):
    """The shop's catalog (version 0 and no currency before the first price is set)."""

    version: int
    currency: str | None
    materials: list[ShopMaterial]
    products: list[ShopProduct]


class ShopOrder(msgspec.Struct, kw_only=True):
    """An order as the shop shows it to its owner. `parked_since`/`parked_reason`: since when, and why in
    words, an update of the order cannot be shown yet."""

    order_id: UUID
    owner_id: str
    number: str
    channel: str
    status: Status
    version: int
    position: int
    item_title: str
    contact_name: str
    material_code: str
    quantity: int
    created_at: datetime
    updated_at: datetime
    promised_date: date | None
    model_filename: str | None
    triangle_count: int | None
    quote_total_minor: int | None
    currency: str | None
    quote: Quote | None
    carrier: str | None
    tracking_number: str | None
    rejection_reason: str | None
    cancellation_reason: str | None
    status_times: dict[str, datetime]
    held_since: datetime | None
    """Since when the order is on hold (None: it is not), and why."""
    hold_reason: str | None
    parked_since: datetime | None
    parked_reason: str | None
    preview_sha256: str | None = None
    """The model's 3D preview (`GET /shop/orders/{order_id}/preview` serves it, this its ETag): made when the
    model is quoted or rejected as too thin; None until then."""


class ShopOrderPage(msgspec.Struct, kw_only=True):
    """A page of the caller's orders, newest first; `next_cursor` fetches the next (None on the last)."""

    items: list[ShopOrder]
    next_cursor: str | None


class MesOrder(msgspec.Struct, kw_only=True):
    """An order as the operators' table lists it. `allowed`: the commands the caller may give it now (on
    the order list only)."""

    order_id: UUID
    number: str
    status: Status
    channel: str
    owner_id: str
    contact_name: str
    item_title: str
    material_code: str
    quantity: int
    created_at: datetime
    updated_at: datetime
    status_since: datetime
    approved_at: datetime | None
    promised_date: date | None
    operator_id: str | None
    quote_total_minor: int | None
    currency: str | None
    quote_valid_until: datetime | None
    """Until when the order's quote holds (None without a quote): approving after it is refused."""
    triangle_count: int | None
    version: int
    position: int
    parked_since: datetime | None
    parked_reason: str | None
    stuck: bool
    overdue: bool
    start_by: datetime | None
    """The latest start of manufacturing that keeps the promised date (None without an open promise)."""
    slack_seconds: int | None
    """start_by less now: negative when manufacturing should have started."""
    held_since: datetime | None
    """Since when the order is on hold (None: it is not): it is out of the queue until released."""
    hold_reason: str | None
    urgency: str | None
    """Why the order ranks where it does, in words: "overdue 2 d", "due in 5 h, needs 2 d", "due in 9 d"."""
    allowed: list[str] | msgspec.UnsetType = msgspec.UNSET


class MesOrderPage(msgspec.Struct, kw_only=True):
    """A page of the operators' order table; `next_cursor` fetches the next (None on the last)."""

    items: list[MesOrder]
    next_cursor: str | None


class ApprovedWaits(msgspec.Struct, kw_only=True):
    """How long orders in MANUFACTURING_APPROVED over 30 days waited (or were on hold), in seconds, per
    order (`n` orders; the percentiles and `max` are None without any)."""

    n: int
    p50: float | None
    p90: float | None
    p99: float | None
    max: float | None


class WaitingAt(msgspec.Struct, kw_only=True):
    """How many orders were waiting in MANUFACTURING_APPROVED at a time (not counting those on hold)."""

    at: datetime
    waiting: int


class StatusBoard(msgspec.Struct, kw_only=True):
    """The MES status board: orders per status and how many of them are on hold, the approved queue's waits
    over 30 days (time waiting and time on hold apart) and its last 24 hours, and the stuck, overdue and
    held orders (the first 20 of each; `*_total` counts the stuck and overdue)."""

    counts: dict[str, int]
    on_hold: dict[str, int]
    approved_waiting_series: list[WaitingAt]
    approved_wait_seconds: ApprovedWaits
    approved_held_seconds: ApprovedWaits
    stuck_total: int
    overdue_total: int
    stuck: list[MesOrder]
    overdue: list[MesOrder]
    held: list[MesOrder]


class ManufacturingEstimate(msgspec.Struct, kw_only=True):
    """How long manufacturing a material is expected to take, which start_by (the urgency of its orders)
    is derived from: the catalog's estimate, else the median of the latest 200 completions measured in
    MANUFACTURING_STARTED (hold time excluded; at least 20, rounded up to 15 minutes), else two days.
    `measured_hours` is the measured figure whether in use or not (null below 20 completions)."""

    material_code: str
    hours: float
    seconds: int
    source: Literal["catalog", "measured", "default"]
    completions: int
    measured_hours: float | None


class ManufacturingEstimates(msgspec.Struct, kw_only=True):
    """Every material the catalog knows or the MES measured, by code."""

    items: list[ManufacturingEstimate]


class MesStreamMessage(msgspec.Struct, kw_only=True):
    """One message (a Server-Sent Event) of the MES change stream: `ready` once connected (data `{}`),
    then a `change` per batch of the MES view, whose data is JSON: `{"position": int, "orders":
    [{order_id, number, status, operator_id, version}], "truncated": bool}` (truncated: too many to
    name, reload the list). Comment lines keep the connection alive."""

    event: Literal["ready", "change"]
    data: str
