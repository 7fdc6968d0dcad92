"""RabbitMQ through aio-pika: durable topic exchanges, quorum queues with a delivery limit and dead-lettering,
publisher confirms, manual acks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass

import aio_pika
import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustConnection,
)

from orders_core.contracts import BINDINGS, DEAD_EXCHANGE, DEAD_QUEUE, DELIVERY_LIMIT, Handler

log = structlog.get_logger("transport")


@dataclass
class AmqpDelivery:
    """An incoming RabbitMQ message, settled through the Delivery protocol."""

    message: AbstractIncomingMessage

    @property
    def body(self) -> bytes:
        return self.message.body

    @property
    def message_id(self) -> str:
        return self.message.message_id or ""

    @property
    def headers(self) -> Mapping[str, str]:
        return {k: str(v) for k, v in (self.message.headers or {}).items() if not k.startswith("x-")}

    @property
    def redelivered(self) -> bool:
        return bool(self.message.redelivered)

    async def ack(self) -> None:
        await self.message.ack()

    async def retry(self) -> None:
        # On a quorum queue every return counts toward x-delivery-limit; past it RabbitMQ dead-letters.
        await self.message.nack(requeue=True)

    async def reject(self) -> None:
        await self.message.reject(requeue=False)


def queue_arguments(queue: str) -> dict[str, object]:
    """Quorum queues (replicated, counting deliveries); all but the dead letters dead-letter on retries."""
    arguments: dict[str, object] = {"x-queue-type": "quorum"}
    if queue != DEAD_QUEUE:
        arguments.update(
            {
                "x-delivery-limit": DELIVERY_LIMIT,
                "x-dead-letter-exchange": DEAD_EXCHANGE,
                "x-dead-letter-routing-key": queue,
            }
        )
    return arguments


class AmqpTransport:
    """A robust connection to RabbitMQ (reconnects by itself) with the system's topology declared."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.connection: AbstractRobustConnection | None = None
        self.channel: AbstractChannel | None = None
        self.exchanges: dict[str, AbstractExchange] = {}
        self._publish_lock = asyncio.Lock()
        self._depth_channel: AbstractRobustChannel | None = None

    async def connect(self) -> None:
        self.connection = await aio_pika.connect_robust(self.url)
        self.channel = await self.connection.channel(publisher_confirms=True)
        for binding in BINDINGS:
            if binding.exchange not in self.exchanges:
                self.exchanges[binding.exchange] = await self.channel.declare_exchange(
                    binding.exchange, aio_pika.ExchangeType.TOPIC, durable=True
                )
            queue = await self.channel.declare_queue(
                binding.queue, durable=True, arguments=queue_arguments(binding.queue)
            )
            await queue.bind(self.exchanges[binding.exchange], binding.pattern)

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()

    async def publish(
        self, exchange: str, routing_key: str, body: bytes, *, message_id: str, headers: Mapping[str, str]
    ) -> None:
        message = aio_pika.Message(
            body,
            message_id=message_id,
            headers=dict(headers),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        # With publisher confirms on, this returns when the broker has the message (or raises if it nacked).
        await self.exchanges[exchange].publish(message, routing_key=routing_key)

    async def depth(self, queue: str) -> int:
        assert self.connection is not None, "connect() first"
        if self._depth_channel is None:
            self._depth_channel = await self.connection.channel()
        # robust=False on a channel of its own: a robust channel answers a passive declare of a queue it
        # declared itself from its cache, with the count it had then.
        declared = await self._depth_channel.declare_queue(queue, passive=True, robust=False)
        return int(declared.declaration_result.message_count or 0)

    async def consume(self, queue: str, handler: Handler, prefetch: int) -> None:
        assert self.connection is not None, "connect() first"
        channel = await self.connection.channel()
        await channel.set_qos(prefetch_count=prefetch)
        source = await channel.declare_queue(queue, durable=True, arguments=queue_arguments(queue))

        async def on_message(message: AbstractIncomingMessage) -> None:
            delivery = AmqpDelivery(message)
            try:
                await handler(delivery)
            except Exception:
                log.exception("consumer failed; message will be redelivered", message_id=delivery.message_id)
                with contextlib.suppress(Exception):
                    await delivery.retry()

        tag = await source.consume(on_message)
        try:
            await asyncio.Future()
        finally:
            with contextlib.suppress(Exception):
                await source.cancel(tag)
                await channel.close()
