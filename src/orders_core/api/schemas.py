"""Request and response bodies of the command API (msgspec Structs: validated on the way in)."""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec

from orders_core.actors import Actor
from orders_core.catalog import Catalog
from orders_core.commands import HOLD_REASON_MAX
from orders_core.contracts import LabourRate, LabourUnit, Material, ModelFile, Product, Quote, Status
from orders_core.operators import MAX_DECLARED
from orders_core.order import Order
from orders_core.webhook_urls import MAX_URL_LENGTH
from orders_core.webhooks import (
    DEFAULT_OVERLAP,
    MAX_DESCRIPTION,
    MAX_OVERLAP,
    WebhookEndpoint,
    WebhookEventType,
)

# No NUL anywhere: PostgreSQL text cannot hold one, so an accepted NUL would halt every projection at its
# event. SOME_TEXT also needs a character that is not blank; written so that matching stays linear.
NO_NUL = r"^[^\x00]*$"
SOME_TEXT = r"^\s*[^\x00\s][^\x00]*$"
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=SOME_TEXT)]
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=2000, pattern=SOME_TEXT)]
Code = Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern=NO_NUL)]
Subject = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[\w.@:+-]+$")]
WorkCentre = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$",
        description="a work centre's code, stored upper-case",
        examples=["CASTING-AU"],
    ),
]
Quantity = Annotated[int, msgspec.Meta(ge=1, le=1000)]


class Strict(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Request bodies refuse fields they do not know, so a typo is a 400 and not a silent default."""


class Channel(enum.StrEnum):
    """Where an order comes from: the web shop, or a partner's system."""

    SHOP = "shop"
    PARTNER = "partner"


class NewOrder(Strict):
    """What `InitiateOrder` takes: the order to start."""

    contact_name: Text
    item_title: Text
    material_code: Code
    quantity: Quantity = 1
    promised_date: date | None = None
    owner_id: Subject | None = None
    """Sellers name the customer or partner they create the order for; others create their own."""
    channel: Channel | None = None


class ShipRequest(Strict):
    carrier: Text
    tracking_number: Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=SOME_TEXT)]


class CancelRequest(Strict):
    reason: Reason


class ProfileRequest(Strict):
    materials: Annotated[list[Code], msgspec.Meta(max_length=MAX_DECLARED)]
    """The material codes the operator works; `[]`: none by code."""


class WorkCentresRequest(Strict):
    work_centres: Annotated[list[WorkCentre], msgspec.Meta(max_length=MAX_DECLARED)]
    """The work centres the operator works (each works the catalog's materials made there); `[]`: none."""


class OperatorProfileView(msgspec.Struct, kw_only=True):
    """What an operator works: the materials they declared, and those made at the work centres they
    declared. Declaring neither: every material."""

    operator_id: str
    materials: list[str]
    work_centres: list[str]
    works: list[str] | None
    """The material codes their queue and take-next offer, by today's catalog; null: every material."""
    version: int
    """0: never declared."""


class HoldRequest(Strict):
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=HOLD_REASON_MAX, pattern=SOME_TEXT)]
    """Why the order waits: "awaiting material", "question about the model", "customer asked to wait"."""


class MaterialRequest(Strict):
    name: Text
    density_g_cm3: Annotated[float, msgspec.Meta(gt=0, le=30)]
    price_per_gram_minor: Annotated[int, msgspec.Meta(ge=0, le=10**9)]
    casting_loss_permille: Annotated[int, msgspec.Meta(ge=0, le=500)] = 50
    min_wall_mm: Annotated[float, msgspec.Meta(gt=0, le=10)] | None = None
    """The thinnest wall this alloy casts; omitted: its family's (gold 0.6, silver 0.8, platinum 0.5 mm)."""
    manufacturing_hours: Annotated[float, msgspec.Meta(ge=0.1, le=2000)] | None = None
    """Expected hours from taking an order of this material to completing it; omitted: 48."""
    work_centre: WorkCentre | None = None
    """Where its orders are made (e.g. `CASTING-AU`); operators who declare it work this material."""


class LabourRateRequest(Strict):
    name: Text
    unit: LabourUnit
    amount_minor: Annotated[int, msgspec.Meta(ge=0, le=10**9)]


class ProductRequest(Strict):
    title: Text
    material_code: Code
    price_minor: Annotated[int, msgspec.Meta(ge=0, le=10**11)]
    description: Annotated[str, msgspec.Meta(max_length=2000, pattern=NO_NUL)] = ""


WebhookUrl = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_URL_LENGTH,
        description="https://, to a host that resolves to public addresses only",
        examples=["https://1.1.1.1/hooks/alexandrite"],
    ),
]
EventTypes = Annotated[
    list[WebhookEventType],
    msgspec.Meta(min_length=1, max_length=len(WebhookEventType), description="the event types to send"),
]
Description = Annotated[str, msgspec.Meta(max_length=MAX_DESCRIPTION, pattern=NO_NUL)]


class NewWebhookEndpoint(Strict):
    """What `RegisterWebhookEndpoint` takes: where to send which order events."""

    url: WebhookUrl
    event_types: EventTypes
    description: Description = ""
    partner_id: Subject | None = None
    """An admin names the partner the endpoint is for; a partner registers its own."""


class WebhookEndpointChanges(Strict):
    """What `UpdateWebhookEndpoint` changes: the fields given (null or absent: unchanged)."""

    url: WebhookUrl | None = None
    event_types: EventTypes | None = None
    description: Description | None = None


class SecretRotation(Strict):
    """How long the replaced secret goes on signing beside the new one (0: not at all, for a leaked one)."""

    overlap_seconds: Annotated[int, msgspec.Meta(ge=0, le=int(MAX_OVERLAP.total_seconds()))] = int(
        DEFAULT_OVERLAP.total_seconds()
    )


class WebhookEndpointView(msgspec.Struct, kw_only=True):
    """A webhook endpoint as the write side holds it, without its signing secrets."""

    endpoint_id: UUID
    partner_id: str
    url: str
    event_types: list[WebhookEventType]
    description: str
    enabled: bool
    disabled_reason: str | None = None
    """Why the sender turned the endpoint off (it answered 410 Gone, or every delivery failed for days):
    enable it once it receives again, and replay what it missed. Null if it is on or was turned off by
    hand."""
    created_at: datetime
    updated_at: datetime
    previous_secret_valid_until: datetime | None
    """After a rotation with an overlap: until when the replaced secret signs beside the new one (once past,
    it signs no more); null if no rotation left one signing."""


class WebhookEndpointWithSecret(WebhookEndpointView, kw_only=True):
    """The answer to a registration or a rotation: the endpoint and its new signing secret, shown this
    once (`whsec_` and base64, as Standard Webhooks libraries take it)."""

    secret: str


class WebhookAttemptView(msgspec.Struct, kw_only=True):
    """One attempt to deliver a message: what the endpoint answered, how fast, and what comes next."""

    attempt_id: int
    message_id: str
    """The message's `webhook-id`."""
    order_id: UUID
    event_type: WebhookEventType
    attempted_at: datetime
    status_code: int | None
    """Null when there was no answer (timeout, no connection, or an address that is not allowed)."""
    latency_ms: int
    error: str | None
    """Why it did not count as delivered; null on a 2xx."""
    outcome: str
    """`delivered`, `retry` (tried again at `next_attempt_at`) or `failed` (given up)."""
    next_attempt_at: datetime | None


class WebhookAttemptPage(msgspec.Struct, kw_only=True):
    """Attempts, newest first; `next_cursor` fetches the next page (null on the last)."""

    items: list[WebhookAttemptView]
    next_cursor: str | None


class WebhookMessageStatus(enum.StrEnum):
    """Where a webhook message stands."""

    PENDING = "pending"
    """On its way, or waiting for its next attempt."""
    DELIVERED = "delivered"
    """An attempt was answered 2xx."""
    FAILED = "failed"
    """Given up: retries spent, the endpoint answered 410, or it was disabled. (A deleted endpoint's messages
    are dropped, and its log goes with it.)"""


class WebhookMessageView(msgspec.Struct, kw_only=True):
    """One message to an endpoint and where it stands."""

    message_id: str
    """Its `webhook-id`: the same on every attempt and replay."""
    order_id: UUID
    order_version: int
    event_type: WebhookEventType
    status: WebhookMessageStatus
    attempts: int
    """Attempts since it was created or last replayed."""
    occurred_at: datetime
    created_at: datetime
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    replayed_at: datetime | None


class WebhookMessagePage(msgspec.Struct, kw_only=True):
    """Messages, newest first; `next_cursor` fetches the next page (null on the last)."""

    items: list[WebhookMessageView]
    next_cursor: str | None


class WebhookReplay(Strict):
    """Which messages of an endpoint to send again."""

    since: datetime
    """Every message created at or after this time (with a time zone)."""
    only_failed: bool = False
    """Only those given up, not those delivered."""


class WebhookReplayed(msgspec.Struct, kw_only=True):
    """How many messages are on their way again."""

    replayed: int


class OrderView(msgspec.Struct, kw_only=True):
    """An order as the write side holds it, with what the caller may do to it now."""

    order_id: UUID
    number: str
    version: int
    status: Status
    channel: str
    owner_id: str
    contact_name: str
    item_title: str
    material_code: str
    quantity: int
    promised_date: date | None
    model: ModelFile | None
    quote: Quote | None
    operator_id: str | None
    carrier: str | None
    tracking_number: str | None
    rejection_reason: str | None
    cancellation_reason: str | None
    held_since: datetime | None
    """Since when the order is on hold (None: it is not); it takes only ReleaseOrder and CancelOrder."""
    hold_reason: str | None
    status_times: dict[str, datetime]
    created_at: datetime
    updated_at: datetime
    overdue: bool
    stuck: bool
    allowed: list[str]


class HistoryEntry(msgspec.Struct, kw_only=True):
    """One event of an order's history."""

    version: int
    event: str
    timestamp: datetime
    actor_role: str
    actor_id: str
    data: dict[str, Any]


class CatalogView(msgspec.Struct, kw_only=True):
    version: int
    currency: str
    materials: list[Material]
    labour_rates: list[LabourRate]
    products: list[Product]


def order_view(order: Order, actor: Actor, now: datetime) -> OrderView:
    """The response body for `order`, as seen by `actor` at `now`."""
    return OrderView(
        order_id=order.id,
        number=order.number,
        version=order.version,
        status=order.status,
        channel=order.channel,
        owner_id=order.owner_id,
        contact_name=order.contact_name,
        item_title=order.item_title,
        material_code=order.material_code,
        quantity=order.quantity,
        promised_date=order.promised_date,
        model=order.model,
        quote=order.quote,
        operator_id=order.operator_id,
        carrier=order.carrier,
        tracking_number=order.tracking_number,
        rejection_reason=order.rejection_reason,
        cancellation_reason=order.cancellation_reason,
        held_since=order.held_since,
        hold_reason=order.hold_reason,
        status_times=dict(order.entered_at),
        created_at=order.created_on,
        updated_at=order.modified_on,
        overdue=order.is_overdue(now),
        stuck=order.is_stuck(now),
        allowed=list(order.allowed_for(actor)),
    )


BASE_FIELDS = frozenset(
    {"originator_id", "originator_version", "timestamp", "originator_topic", "actor_role", "actor_id", "meta"}
)


def history_entry(event: Order.Event) -> HistoryEntry:
    """One stored event as a history line."""
    fields = {k: v for k, v in vars(event).items() if k not in BASE_FIELDS}
    return HistoryEntry(
        version=event.originator_version,
        event=type(event).__name__,
        timestamp=event.timestamp,
        actor_role=event.actor_role,
        actor_id=event.actor_id,
        data=fields,
    )


def catalog_view(catalog: Catalog) -> CatalogView:
    """The catalog as a response body."""
    return CatalogView(
        version=catalog.version,
        currency=catalog.currency,
        materials=sorted(catalog.materials.values(), key=lambda m: m.code),
        labour_rates=sorted(catalog.labour_rates.values(), key=lambda r: r.code),
        products=sorted(catalog.products.values(), key=lambda p: p.sku),
    )


def webhook_endpoint_view(partner_id: str, endpoint: WebhookEndpoint) -> WebhookEndpointView:
    """An endpoint as a response body: everything but its secrets."""
    previous = endpoint.previous_secret
    return WebhookEndpointView(
        endpoint_id=endpoint.endpoint_id,
        partner_id=partner_id,
        url=endpoint.url,
        event_types=sorted(endpoint.event_types),
        description=endpoint.description,
        enabled=endpoint.enabled,
        disabled_reason=endpoint.disabled_reason,
        created_at=endpoint.created_at,
        updated_at=endpoint.updated_at,
        previous_secret_valid_until=previous.valid_until if previous is not None else None,
    )


def webhook_endpoint_with_secret(partner_id: str, endpoint: WebhookEndpoint) -> WebhookEndpointWithSecret:
    """An endpoint and its current secret, for the one answer that shows it."""
    view = webhook_endpoint_view(partner_id, endpoint)
    return WebhookEndpointWithSecret(**msgspec.structs.asdict(view), secret=endpoint.secret.value)
