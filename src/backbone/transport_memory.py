"""An in-process broker for the embedded default: the same topology and delivery rules as RabbitMQ.

Kept: publish returns once the message is queued; a delivery stays owned by its consumer until it is
acked; retry (or a handler that raises, or a consumer that stops) puts it back, marked redelivered; after
DELIVERY_LIMIT deliveries, or on reject, it goes to the dead-letter queue. Not kept: durability across a
restart of the process (the relay republishes from its last confirmed position, so nothing is lost).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import structlog

from orders_core.contracts import BINDINGS, DEAD_EXCHANGE, DELIVERY_LIMIT, Handler
from orders_core.metrics import DEAD_LETTERS

log = structlog.get_logger("transport")


def topic_matches(pattern: str, routing_key: str) -> bool:
    """Whether an AMQP topic pattern (`*` one word, `#` zero or more words) matches a routing key."""

    def match(p: list[str], k: list[str]) -> bool:
        if not p:
            return not k
        if p[0] == "#":
            return any(match(p[1:], k[i:]) for i in range(len(k) + 1))
        return bool(k) and p[0] in ("*", k[0]) and match(p[1:], k[1:])

    return match(pattern.split("."), routing_key.split("."))


@dataclass
class Message:
    body: bytes
    message_id: str
    headers: dict[str, str]
    routing_key: str
    deliveries: int = 0


@dataclass
class MemoryDelivery:
    """A message handed to one consumer; settles exactly once."""

    broker: MemoryTransport
    queue: str
    message: Message
    settled: bool = field(default=False)

    @property
    def body(self) -> bytes:
        return self.message.body

    @property
    def message_id(self) -> str:
        return self.message.message_id

    @property
    def headers(self) -> Mapping[str, str]:
        return self.message.headers

    @property
    def redelivered(self) -> bool:
        return self.message.deliveries > 1

    async def ack(self) -> None:
        self.settled = True

    async def retry(self) -> None:
        if not self.settled:
            self.settled = True
            self.broker.requeue(self.queue, self.message)

    async def reject(self) -> None:
        if not self.settled:
            self.settled = True
            self.broker.dead_letter(self.queue, self.message)


class MemoryTransport:
    """Queues in this process's memory, served on the event loop that connected it."""

    def __init__(self) -> None:
        self.queues: dict[str, asyncio.Queue[Message]] = {}
        self.routes: list[tuple[str, str, str]] = []

    async def connect(self) -> None:
        for binding in BINDINGS:
            self.queues.setdefault(binding.queue, asyncio.Queue())
            self.routes.append((binding.exchange, binding.pattern, binding.queue))

    async def close(self) -> None:
        return None

    async def publish(
        self, exchange: str, routing_key: str, body: bytes, *, message_id: str, headers: Mapping[str, str]
    ) -> None:
        for route_exchange, pattern, queue in self.routes:
            if route_exchange == exchange and topic_matches(pattern, routing_key):
                self.queues[queue].put_nowait(Message(body, message_id, dict(headers), routing_key))

    async def consume(self, queue: str, handler: Handler, prefetch: int) -> None:
        source = self.queues[queue]
        slots = asyncio.Semaphore(prefetch)
        running: set[asyncio.Task[None]] = set()
        try:
            while True:
                await slots.acquire()
                message = await source.get()
                message.deliveries += 1
                delivery = MemoryDelivery(self, queue, message)
                task = asyncio.create_task(self._handle(handler, delivery, slots))
                running.add(task)
                task.add_done_callback(running.discard)
        finally:
            for task in running:
                task.cancel()
            for task in list(running):
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _handle(self, handler: Handler, delivery: MemoryDelivery, slots: asyncio.Semaphore) -> None:
        try:
            await handler(delivery)
        except Exception:
            log.exception("consumer failed; message will be redelivered", message_id=delivery.message_id)
        finally:
            if not delivery.settled:  # neither acked nor rejected: like a lost consumer, redeliver
                await delivery.retry()
            slots.release()

    def requeue(self, queue: str, message: Message) -> None:
        """Put a message back, or dead-letter it once it has been delivered DELIVERY_LIMIT times."""
        if message.deliveries >= DELIVERY_LIMIT:
            self.dead_letter(queue, message)
        else:
            self.queues[queue].put_nowait(message)

    def dead_letter(self, queue: str, message: Message) -> None:
        """Route a message to the dead-letter exchange, keyed by the queue it died in."""
        log.warning(
            "dead-lettered", queue=queue, message_id=message.message_id, deliveries=message.deliveries
        )
        DEAD_LETTERS.labels(queue).inc()
        headers = {**message.headers, "x-first-death-queue": queue}
        for route_exchange, pattern, target in self.routes:
            if route_exchange == DEAD_EXCHANGE and topic_matches(pattern, queue):
                self.queues[target].put_nowait(Message(message.body, message.message_id, headers, queue))

    async def depth(self, queue: str) -> int:
        """Messages waiting in `queue` (not counting those being handled)."""
        return self.queues[queue].qsize()
