"""The relay: publishes every stored order event to RabbitMQ, the event store serving as the outbox.

It runs as a projection whose 'view' is the broker: each batch is published and confirmed before the
batch's position is committed, so a crash republishes (consumers are idempotent on the stable message id)
and never skips. OrderSubmitted goes out as `order.submitted`, RepriceRequested as
`order.reprice_requested`, each with what pricing needs (today's catalog prices). A message the
system's own topology routes to a queue is published mandatory: if the broker has no such queue (deleted,
not yet declared) it returns the message, the publish raises Unroutable and the batch is retried, instead
of a confirm for a message nobody holds. The other events are for whoever subscribes, maybe nobody.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import msgspec
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind

from orders_core import metrics
from orders_core.application import OrdersApplication
from orders_core.contracts import (
    BY_EVENT,
    ORDERS_EXCHANGE,
    PRICING_EVENTS,
    Change,
    OrderEventV1,
    OrderSubmittedV1,
    PublishFailed,
    Transport,
    message_id_for,
    queues_for,
    routing_key,
)
from orders_core.order import Order


@dataclass(frozen=True)
class Outgoing:
    """A message ready to publish."""

    exchange: str
    routing_key: str
    body: bytes
    message_id: str
    headers: dict[str, str]
    mandatory: bool
    """A queue of the system must take it (see `queues_for`): unroutable is then a failure."""

    @classmethod
    def to(cls, exchange: str, key: str, body: bytes, message_id: str, headers: dict[str, str]) -> Outgoing:
        """A message for `exchange`, mandatory if the system's topology routes `key` to a queue."""
        return cls(exchange, key, body, message_id, headers, mandatory=bool(queues_for(exchange, key)))


class BlockingPublisher:
    """Publishes from a worker thread through a transport that lives on an event loop elsewhere."""

    def __init__(self, transport: Transport, loop: asyncio.AbstractEventLoop, timeout: float = 30.0) -> None:
        self.transport, self.loop, self.timeout = transport, loop, timeout

    def __call__(self, messages: Sequence[Outgoing]) -> None:
        """Publish all and return once the broker confirmed every one (raises PublishFailed otherwise)."""
        future = asyncio.run_coroutine_threadsafe(self._publish(messages), self.loop)
        try:
            future.result(self.timeout)
        except TimeoutError as e:
            future.cancel()  # the batch is retried: no late confirm should outlive its attempt
            raise PublishFailed(f"{len(messages)} message(s) not confirmed within {self.timeout} s") from e

    async def _publish(self, messages: Sequence[Outgoing]) -> None:
        await asyncio.gather(
            *(
                self.transport.publish(
                    m.exchange,
                    m.routing_key,
                    m.body,
                    message_id=m.message_id,
                    headers=m.headers,
                    mandatory=m.mandatory,
                )
                for m in messages
            )
        )


tracer = trace.get_tracer("orders_core.relay")


class Relay:
    """The outbox relay, shaped as a projection: the projection runner drives it (batches, lock, tracking)."""

    name = "relay"

    def __init__(self, orders: OrdersApplication, publish: BlockingPublisher) -> None:
        self.orders = orders
        self.publish = publish

    def forget(self) -> None:
        return None

    def apply(self, cursor: Any, schema: str, changes: Sequence[Change]) -> None:
        """Publish the batch's order events; returns only after the broker confirmed them all."""
        messages = [self.outgoing(c) for c in changes if c.event.aggregate == "order"]
        if messages:
            self.publish(messages)
            for message in messages:
                metrics.PUBLISHED.labels(message.routing_key).inc()

    def outgoing(self, change: Change) -> Outgoing:
        """The integration message for one stored order event."""
        fields = change.event.fields
        message_id = message_id_for(change.aggregate_id, change.version)
        headers = {k: str(v) for k, v in (fields.get("meta") or {}).items()}
        common: dict[str, Any] = {
            "message_id": message_id,
            "order_id": change.aggregate_id,
            "version": change.version,
            "position": change.position,
            "occurred_at": change.event.timestamp,
        }
        key = routing_key(change.event.name)
        # The relay's hop of the order's trace: a child of the request that stored the event, and the
        # parent of whoever consumes the message (its context travels in the AMQP headers).
        with tracer.start_as_current_span(
            f"publish {key}",
            context=propagate.extract(headers),
            kind=SpanKind.PRODUCER,
            attributes={"messaging.message.id": message_id, "order.id": change.aggregate_id},
        ):
            propagate.inject(headers)
        if change.event.name not in PRICING_EVENTS:
            owner = fields.get("owner_id") or self._order_at(change).owner_id
            status = BY_EVENT[change.event.name].target.value
            body = OrderEventV1(**common, event=change.event.name, status=status, owner_id=owner)
            return Outgoing.to(ORDERS_EXCHANGE, key, msgspec.json.encode(body), message_id, headers)
        return Outgoing.to(
            ORDERS_EXCHANGE, key, msgspec.json.encode(self._submitted(change, common)), message_id, headers
        )

    def _submitted(self, change: Change, common: dict[str, Any]) -> OrderSubmittedV1:
        order = self._order_at(change)
        catalog = self.orders.catalog()
        material = catalog.materials.get(order.material_code)
        if order.model is None or material is None:
            raise ValueError(f"order {order.id} was submitted without a model or with an unknown material")
        return OrderSubmittedV1(
            **common,
            owner_id=order.owner_id,
            model=order.model,
            material=material,
            labour_rates=sorted(catalog.labour_rates.values(), key=lambda r: r.code),
            quantity=order.quantity,
            currency=catalog.currency,
            catalog_version=catalog.version,
        )

    def _order_at(self, change: Change) -> Order:
        # As of this event, not now: after a crash the relay republishes old events of orders that moved on.
        order: object = self.orders.repository.get(UUID(change.aggregate_id), version=change.version)
        assert isinstance(order, Order)
        return order
