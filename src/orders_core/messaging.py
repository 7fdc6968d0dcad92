"""What the relay, the pricing workers and the results consumer need of a message broker.

Two implementations live in the composition root: RabbitMQ (aio-pika) and an in-process stand-in for the
embedded default. Both keep the semantics the consumers rely on: a publish returns once a queue holds the
message, and raises PublishFailed otherwise (a mandatory message no queue is bound for included); a
delivery is redelivered until acked; a message whose handling failed DELIVERY_LIMIT times, or that was
rejected, goes to the dead-letter queue. A consumer that dies holding a message is not the message's
failure: it comes back uncounted, up to REDELIVERY_BACKSTOP times.
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
"""Where messages go after DELIVERY_LIMIT failures or an explicit reject: poison, for people."""
DELIVERY_LIMIT = 5
"""Failed attempts (the handler raised, or asked to retry) after which a message is dead-lettered."""
REDELIVERY_BACKSTOP = 50
"""The broker dead-letters a message anyway once more deliveries than this in a row ended with the consumer
gone (killed, disconnected): the bound for a message that kills every consumer it reaches. Far above the
restarts a sound message meets, so that killed workers never dead-letter one."""


@dataclass(frozen=True)
class Binding:
    """Messages published to `exchange` with a routing key matching `pattern` (AMQP topic) go to `queue`."""

    exchange: str
    pattern: str
    queue: str


BINDINGS = (
    Binding(ORDERS_EXCHANGE, "order.submitted", PRICING_REQUESTS),
    Binding(ORDERS_EXCHANGE, "order.reprice_requested", PRICING_REQUESTS),
    Binding(RESULTS_EXCHANGE, "#", RESULTS_QUEUE),
    Binding(DEAD_EXCHANGE, "#", DEAD_QUEUE),
)
"""The whole topology; every queue is durable (quorum on RabbitMQ) and dead-letters to DEAD_EXCHANGE."""


def topic_matches(pattern: str, routing_key: str) -> bool:
    """Whether an AMQP topic pattern (`*` one word, `#` zero or more words) matches a routing key."""

    def match(p: list[str], k: list[str]) -> bool:
        if not p:
            return not k
        if p[0] == "#":
            return any(match(p[1:], k[i:]) for i in range(len(k) + 1))
        return bool(k) and p[0] in ("*", k[0]) and match(p[1:], k[1:])

    return match(pattern.split("."), routing_key.split("."))


def queues_for(exchange: str, routing_key: str) -> tuple[str, ...]:
    """The system's own queues BINDINGS route such a message to: none for an event only others may want."""
    return tuple(
        b.queue for b in BINDINGS if b.exchange == exchange and topic_matches(b.pattern, routing_key)
    )


class PublishFailed(ConnectionError):
    """The broker did not confirm that a queue holds the message: nacked, unconfirmed because the channel
    or connection went away, or returned as unroutable. Publishing it again is safe (consumers dedupe on the
    message id). A ConnectionError, so that callers treat it as the transient fault it usually is: the
    projection runner retries the relay's batch, never parks it."""


class Unroutable(PublishFailed):
    """A mandatory message no queue is bound for: the broker returned it (or there is no such exchange).
    Transient too: the queue is usually being declared again (a broker restart, an upgrade recreating it)."""


class Delivery(Protocol):
    """One delivery of a message to a consumer."""

    @property
    def body(self) -> bytes: ...

    @property
    def message_id(self) -> str: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def redelivered(self) -> bool:
        """Delivered before: to a consumer that died, or one whose handling failed."""
        ...

    @property
    def failures(self) -> int:
        """Earlier attempts whose handling failed (raised, or retried); consumers that died do not count."""
        ...

    async def ack(self) -> None:
        """The consumer's effect is committed: forget the message."""

    async def retry(self) -> None:
        """Could not handle it now (a failure): deliver it again, or dead-letter it if this was failure number
        DELIVERY_LIMIT."""

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
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        *,
        message_id: str,
        headers: Mapping[str, str],
        mandatory: bool = True,
    ) -> None:
        """Publish and return once the broker confirmed that a queue holds the message; raises PublishFailed
        otherwise, Unroutable if no queue is bound for it. `mandatory=False` is for events only other
        systems may subscribe to: with nobody bound, the broker drops them by design."""

    async def depth(self, queue: str) -> int:
        """Messages ready in `queue` (not counting those being handled)."""
        ...

    async def consume(self, queue: str, handler: Handler, prefetch: int) -> None:
        """Give deliveries from `queue` to `handler`, at most `prefetch` unacked at once, until cancelled.
        A handler that raises, or returns without settling, fails its attempt (as `retry`); one cancelled
        with the consumer leaves the message to come back uncounted, as a consumer that died would."""

    async def drain(self, seconds: float) -> None:
        """A graceful stop's first step: every consumer takes no more deliveries, and the handlers under way
        get up to `seconds` to settle theirs. Consumers are cancelled after it, as before."""
