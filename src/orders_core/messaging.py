"""What the relay, the pricing workers and the results consumer need of a message broker.

Two implementations live in the composition root: RabbitMQ (aio-pika) and an in-process stand-in for the
embedded default. Both keep the semantics the consumers rely on: a publish returns once the broker holds
the message; a delivery is redelivered until acked; after DELIVERY_LIMIT deliveries, or on reject, it goes
to the dead-letter queue.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

ORDERS_EXCHANGE = "orders.events"
"""Topic exchange the relay publishes every order event to, routing key `order.<event>`."""
PRICING_REQUESTS = "pricing.requests"
"""Quorum queue of the pricing workers, bound to ORDERS_EXCHANGE with routing key `order.submitted`."""
RESULTS_EXCHANGE = "pricing.results"
"""Exchange the pricing workers publish results to; the results consumer's queue has the same name."""
RESULTS_QUEUE = "pricing.results"
DEAD_EXCHANGE = "orders.dead"
DEAD_QUEUE = "dead.letters"
"""Where messages go after bounded retries (x-delivery-limit) or an explicit reject: poison, for people."""
DELIVERY_LIMIT = 5


@dataclass(frozen=True)
class Binding:
    """Messages published to `exchange` with a routing key matching `pattern` (AMQP topic) go to `queue`."""

    exchange: str
    pattern: str
    queue: str


BINDINGS = (
    Binding(ORDERS_EXCHANGE, "order.submitted", PRICING_REQUESTS),
    Binding(RESULTS_EXCHANGE, "#", RESULTS_QUEUE),
    Binding(DEAD_EXCHANGE, "#", DEAD_QUEUE),
)
"""The whole topology; every queue is durable (quorum on RabbitMQ) and dead-letters to DEAD_EXCHANGE."""


class Delivery(Protocol):
    """One delivery of a message to a consumer."""

    @property
    def body(self) -> bytes: ...

    @property
    def message_id(self) -> str: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def redelivered(self) -> bool: ...

    async def ack(self) -> None:
        """The consumer's effect is committed: forget the message."""

    async def retry(self) -> None:
        """Could not handle it now (a fault): deliver it again, up to the delivery limit."""

    async def reject(self) -> None:
        """It can never be handled (poison): send it to the dead-letter queue now."""


Handler = Callable[[Delivery], Awaitable[None]]


class Transport(Protocol):
    """A broker connection with the system's topology declared."""

    async def connect(self) -> None:
        """Connect and declare exchanges, queues and bindings (idempotent)."""

    async def close(self) -> None:
        """Stop consuming and disconnect."""

    async def publish(
        self, exchange: str, routing_key: str, body: bytes, *, message_id: str, headers: Mapping[str, str]
    ) -> None:
        """Publish and return once the broker confirmed it holds the message (raises if it refused)."""

    async def depth(self, queue: str) -> int:
        """Messages ready in `queue` (not counting those being handled)."""
        ...

    async def consume(self, queue: str, handler: Handler, prefetch: int) -> None:
        """Give deliveries from `queue` to `handler`, at most `prefetch` unacked at once, until cancelled."""
