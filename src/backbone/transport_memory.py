"""An in-process broker for the embedded default: the same topology and delivery rules as RabbitMQ.

Kept: publish returns once the message is queued, and raises Unroutable if no queue is bound for a mandatory
one; a delivery stays owned by its consumer until it is acked; a failed attempt (retry, or a handler that
raises) puts it back marked redelivered, and the DELIVERY_LIMIT-th failure or a reject dead-letters it; a
consumer that stops puts its messages back uncounted, up to REDELIVERY_BACKSTOP times in a row. Not kept:
durability across a restart of the process (the relay republishes from its last confirmed position, so
nothing is lost).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import structlog

from orders_core.contracts import (
    BINDINGS,
    DEAD_EXCHANGE,
    DELIVERY_LIMIT,
    REDELIVERY_BACKSTOP,
    Handler,
    Unroutable,
    topic_matches,
)
from orders_core.metrics import DEAD_LETTERS

log = structlog.get_logger("transport")


@dataclass
class Message:
    body: bytes
    message_id: str
    headers: dict[str, str]
    routing_key: str
    failures: int = 0
    returns: int = 0
    """Deliveries in a row whose consumer stopped holding it (RabbitMQ's delivery-count)."""


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
        return self.message.failures > 0 or self.message.returns > 0

    @property
    def failures(self) -> int:
        return self.message.failures

    async def ack(self) -> None:
        self.settled = True

    async def retry(self) -> None:
        if not self.settled:
            self.settled = True
            self.broker.fail(self.queue, self.message)

    def release(self) -> None:
        """The consumer stopped while holding it: not the message's failure."""
        if not self.settled:
            self.settled = True
            self.broker.give_back(self.queue, self.message)

    async def reject(self) -> None:
        if not self.settled:
            self.settled = True
            self.broker.dead_letter(self.queue, self.message)


class MemoryTransport:
    """Queues in this process's memory, served on the event loop that connected it."""

    def __init__(self) -> None:
        self.queues: dict[str, asyncio.Queue[Message]] = {}
        self.routes: list[tuple[str, str, str]] = []
        self.draining = False
        self.handling: set[asyncio.Task[None]] = set()

    async def connect(self) -> None:
        for binding in BINDINGS:
            self.queues.setdefault(binding.queue, asyncio.Queue())
            self.routes.append((binding.exchange, binding.pattern, binding.queue))

    async def close(self) -> None:
        return None

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
        targets = [
            queue
            for route_exchange, pattern, queue in self.routes
            if route_exchange == exchange and topic_matches(pattern, routing_key)
        ]
        if mandatory and not targets:
            raise Unroutable(f"no queue is bound to exchange {exchange!r} for routing key {routing_key!r}")
        for queue in targets:
            self.queues[queue].put_nowait(Message(body, message_id, dict(headers), routing_key))

    async def consume(self, queue: str, handler: Handler, prefetch: int) -> None:
        source = self.queues[queue]
        slots = asyncio.Semaphore(prefetch)
        running: dict[asyncio.Task[None], MemoryDelivery] = {}
        try:
            while True:
                await slots.acquire()
                message = await source.get()
                if self.draining:  # not this consumer's to take any more: left for whoever consumes next
                    source.put_nowait(message)
                    slots.release()
                    await asyncio.Future()  # until cancelled
                delivery = MemoryDelivery(self, queue, message)
                task = asyncio.create_task(self._handle(handler, delivery, slots))
                running[task] = delivery
                self.handling.add(task)
                task.add_done_callback(running.pop)
                task.add_done_callback(self.handling.discard)
        finally:
            held = list(running.items())
            for task, _ in held:
                task.cancel()
            for task, delivery in held:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                delivery.release()  # a task cancelled before it started never reached its handler

    async def drain(self, seconds: float) -> None:
        self.draining = True
        if self.handling:
            await asyncio.wait(set(self.handling), timeout=seconds)

    async def _handle(self, handler: Handler, delivery: MemoryDelivery, slots: asyncio.Semaphore) -> None:
        try:
            await handler(delivery)
        except asyncio.CancelledError:
            delivery.release()  # the consumer stopped (our stand-in for a killed worker)
            raise
        except Exception:
            log.exception("consumer failed; message will be redelivered", message_id=delivery.message_id)
            await delivery.retry()
        else:
            await delivery.retry()  # returned without settling: counted, so a handler bug cannot loop
        finally:
            slots.release()

    def fail(self, queue: str, message: Message) -> None:
        """Put a message back as a fresh one carrying one more failure, or dead-letter it at the limit."""
        failed = replace(message, failures=message.failures + 1, returns=0)
        if failed.failures >= DELIVERY_LIMIT:
            self.dead_letter(queue, failed)
        else:
            self.queues[queue].put_nowait(failed)

    def give_back(self, queue: str, message: Message) -> None:
        """Put back a message whose consumer stopped; past the backstop, dead-letter it as RabbitMQ would."""
        message.returns += 1
        if message.returns > REDELIVERY_BACKSTOP:
            self.dead_letter(queue, message)
        else:
            self.queues[queue].put_nowait(message)

    def dead_letter(self, queue: str, message: Message) -> None:
        """Route a message to the dead-letter exchange, keyed by the queue it died in."""
        log.warning(
            "dead-lettered",
            queue=queue,
            message_id=message.message_id,
            failures=message.failures,
            returns=message.returns,
        )
        DEAD_LETTERS.labels(queue).inc()
        headers = {**message.headers, "x-first-death-queue": queue}
        for route_exchange, pattern, target in self.routes:
            if route_exchange == DEAD_EXCHANGE and topic_matches(pattern, queue):
                self.queues[target].put_nowait(Message(message.body, message.message_id, headers, queue))

    async def depth(self, queue: str) -> int:
        """Messages waiting in `queue` (not counting those being handled)."""
        return self.queues[queue].qsize()
