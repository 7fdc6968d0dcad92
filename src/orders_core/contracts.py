"""What crosses a process boundary: value types and integration messages other packages may import.

read_models, projectors and pricing import this module and nothing else of orders_core. Structs here are
versioned by name (`...V1`); a change that breaks readers gets a new version beside the old one.
"""

from __future__ import annotations

from typing import Any, Protocol

import msgspec

from orders_core.actors import Actor, OrderFacts, allowed_commands
from orders_core.lifecycle import (
    BY_ACTION,
    BY_COMMAND,
    BY_EVENT,
    EXPECTED_MANUFACTURING,
    PROMISE_SETTLED,
    STATUS_LIMITS,
    TERMINAL,
    TRANSITIONS,
    Role,
    Status,
    Transition,
)
from orders_core.messaging import (
    BINDINGS,
    DEAD_EXCHANGE,
    DEAD_QUEUE,
    DELIVERY_LIMIT,
    ORDERS_EXCHANGE,
    PRICING_REQUESTS,
    REDELIVERY_BACKSTOP,
    RESULTS_EXCHANGE,
    RESULTS_QUEUE,
    Binding,
    Delivery,
    Handler,
    PublishFailed,
    Transport,
    Unroutable,
    queues_for,
    topic_matches,
)
from orders_core.money import Money
from orders_core.values import (
    MODEL_FORMATS,
    QUOTE_VALIDITY,
    LabourRate,
    LabourUnit,
    Material,
    MeshFigures,
    ModelFile,
    Product,
    Quote,
    QuoteLine,
    WallFigures,
)

__all__ = [
    "BINDINGS",
    "BY_ACTION",
    "BY_COMMAND",
    "BY_EVENT",
    "CATALOG_TOPIC",
    "DEAD_EXCHANGE",
    "DEAD_QUEUE",
    "DELIVERY_LIMIT",
    "EXPECTED_MANUFACTURING",
    "MES_ANNOUNCED",
    "MES_CHANGES_CHANNEL",
    "MODEL_FORMATS",
    "ORDERS_EXCHANGE",
    "ORDER_TOPIC",
    "PRICING_EVENTS",
    "PRICING_REQUESTS",
    "PROMISE_SETTLED",
    "QUOTE_VALIDITY",
    "REDELIVERY_BACKSTOP",
    "RESULTS_EXCHANGE",
    "RESULTS_QUEUE",
    "STATUS_LIMITS",
    "TERMINAL",
    "TRANSITIONS",
    "UNPROJECTED_TOPICS",
    "WEBHOOKS_TOPIC",
    "Actor",
    "Binding",
    "BlobReader",
    "Change",
    "Delivery",
    "Handler",
    "LabourRate",
    "LabourUnit",
    "Material",
    "MeshFigures",
    "ModelFile",
    "Money",
    "OrderEventV1",
    "OrderFacts",
    "OrderMessage",
    "OrderSubmittedV1",
    "PreviewReader",
    "PreviewWriter",
    "PricingResultV1",
    "Product",
    "PublishFailed",
    "Quote",
    "QuoteLine",
    "Role",
    "Status",
    "StoredEvent",
    "Transition",
    "Transport",
    "Unroutable",
    "WallFigures",
    "allowed_commands",
    "message_id_for",
    "queues_for",
    "read_stored_event",
    "routing_key",
    "topic_matches",
]

MES_CHANGES_CHANNEL = "mes_changes"
"""PostgreSQL NOTIFY channel on which the MES projection announces each committed batch. JSON payload:
{"position": int, "orders": [{order_id, number, status, operator_id, version}], "truncated": bool}."""
MES_ANNOUNCED = ("order_id", "number", "status", "operator_id", "version")
"""The fields of each order a MES change names."""

ORDER_TOPIC = "orders_core.order:Order"
CATALOG_TOPIC = "orders_core.catalog:Catalog"
"""Stored events' topics are `<aggregate topic>.<EventName>`; projections select and decode by them."""
WEBHOOKS_TOPIC = "orders_core.webhooks:PartnerWebhooks"
OPERATORS_TOPIC = "orders_core.operators:OperatorProfile"
UNPROJECTED_TOPICS: tuple[str, ...] = (WEBHOOKS_TOPIC + ".", OPERATORS_TOPIC + ".")
"""Topics of the write side that no view reads: known, so not counted as skipped. The webhook endpoints'
events carry signing secrets, which no view may copy; the webhook sender reads the aggregate itself. Operator
profiles are read by the command API itself (take-next)."""


class StoredEvent(msgspec.Struct, frozen=True):
    """A stored order or catalog event as projections read it: its name and plain JSON fields.

    Timestamps and dates arrive as ISO strings, ids as hex strings (the store's tagged types unwrapped).
    """

    aggregate: str
    name: str
    fields: dict[str, Any]

    @property
    def timestamp(self) -> str:
        """When the event happened, ISO 8601 with offset."""
        value: str = self.fields["timestamp"]
        return value


_TOPICS = ((ORDER_TOPIC + ".", "order"), (CATALOG_TOPIC + ".", "catalog"))


def read_stored_event(topic: str, state: bytes) -> StoredEvent | None:
    """Decode a stored event of the orders application, or None for topics projections do not know."""
    for prefix, aggregate in _TOPICS:
        if topic.startswith(prefix):
            fields: dict[str, Any] = msgspec.json.decode(state)
            for key, value in fields.items():
                if type(value) is dict and "_type_" in value and "_data_" in value:
                    fields[key] = value["_data_"]
            return StoredEvent(aggregate, topic[len(prefix) :], fields)
    return None


class BlobReader(Protocol):
    """Where a pricing worker fetches model files by sha256 (local directory or PostgreSQL)."""

    def read(self, sha256: str) -> bytes:
        """The blob's bytes; raises KeyError if there is none."""
        ...


class PreviewWriter(Protocol):
    """Where a pricing worker stores a model's preview (content-addressed, beside the models)."""

    def put_preview(self, content: bytes) -> str:
        """Store the preview; its sha256. Storing the same bytes again changes nothing."""
        ...


class PreviewReader(Protocol):
    """Where the read API fetches previews by sha256."""

    def read_preview(self, sha256: str) -> bytes:
        """The preview's bytes; raises KeyError if there is none."""
        ...


class Change(msgspec.Struct, frozen=True):
    """One stored event with its place in the log: what projections and the relay consume."""

    position: int
    aggregate_id: str
    version: int
    event: StoredEvent


# --- integration messages (RabbitMQ) ----------------------------------------------------------------------


def routing_key(event_name: str) -> str:
    """`order.submitted` for OrderSubmitted, `order.manufacturing_started` for ManufacturingStarted."""
    words = event_name.removeprefix("Order")
    snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in words).lstrip("_")
    return f"order.{snake}"


class OrderEventV1(msgspec.Struct, frozen=True, kw_only=True, tag="order.event.v1"):
    """Every order event, as other systems see it: which order, which event, the status it led to."""

    message_id: str
    order_id: str
    version: int
    position: int
    event: str
    status: str
    occurred_at: str
    owner_id: str


class OrderSubmittedV1(msgspec.Struct, frozen=True, kw_only=True, tag="order.submitted.v1"):
    """An order was submitted (routing key `order.submitted`) or is to be priced again (RepriceRequested,
    `order.reprice_requested`): with everything a pricing worker needs, the catalog's prices at the time
    included, so a quote needs no other lookup than the model file."""

    message_id: str
    order_id: str
    version: int
    """The version of the OrderSubmitted (or RepriceRequested) event: a pricing result answers exactly
    this submission."""
    position: int
    occurred_at: str
    owner_id: str
    model: ModelFile
    material: Material
    labour_rates: list[LabourRate]
    quantity: int
    currency: str
    catalog_version: int | None = None
    """The version of the catalog `material` and `labour_rates` come from (None in older messages)."""


PRICING_EVENTS = frozenset({"OrderSubmitted", "RepriceRequested"})
"""Order events the relay publishes as an OrderSubmittedV1: each asks the pricing service for a quote."""


OrderMessage = OrderEventV1 | OrderSubmittedV1
"""What the relay publishes to ORDERS_EXCHANGE; decode with `msgspec.json.decode(body, type=OrderMessage)`."""


class PricingResultV1(msgspec.Struct, frozen=True, kw_only=True, tag="pricing.result.v1"):
    """A quote, or the reason the model cannot be made, for one submission of one order."""

    message_id: str
    request_id: str
    order_id: str
    submission: int
    """The version of the OrderSubmitted event this answers."""
    model_sha256: str
    quote: Quote | None = None
    rejection_code: str | None = None
    rejection_reason: str | None = None
    preview_sha256: str | None = None
    """A rejected model's preview in the blob store (a quote carries its own in `quote`), if one was made:
    a model rejected as too thin shows where."""


def message_id_for(order_id: str, version: int) -> str:
    """The stable id of the message about one stored event: the same on every republish."""
    return f"order:{order_id}:v{version}"
