"""RabbitMQ through aio-pika: durable topic exchanges, quorum queues with dead-lettering, publisher confirms
with mandatory routing, manual acks, and failed attempts counted by the consumer.

Why the consumer counts: a quorum queue's delivery-count goes up on every return, and a consumer that died
holding the message returns it too (measured on RabbitMQ 3.10.8: a nack with requeue, a closed channel and
a closed connection each add one). A limit on that count cannot tell a poison message from a sound one
whose workers were killed. So a failed attempt is republished to its own queue with FAILURES_HEADER one
higher, confirmed, and only then is the original acked (a crash in between leaves a duplicate, which
consumers dedupe, never a loss); the DELIVERY_LIMIT-th failure is rejected to the dead letters. The
broker's x-delivery-limit stays, at REDELIVERY_BACKSTOP, for a message that kills every consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass

import aio_pika
import aiormq
import structlog
from aio_pika.abc import (
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
)

from orders_core.contracts import (
    BINDINGS,
    DEAD_EXCHANGE,
    DEAD_QUEUE,
    DELIVERY_LIMIT,
    REDELIVERY_BACKSTOP,
    Handler,
    PublishFailed,
    Unroutable,
)
from orders_core.metrics import DEAD_LETTERS

log = structlog.get_logger("transport")

FAILURES_HEADER = "x-failed-attempts"
"""Failed attempts so far; an `x-` header, so handlers never see it nor copy it into what they publish."""

RECONNECT_INTERVAL_S = 2.0
"""Between attempts to reach the broker; a RabbitMQ restart takes about 5 s on this machine kind."""

UPGRADE_HINT = (
    "RabbitMQ cannot change a queue's arguments in place. Stop what publishes to it (the relay for "
    "pricing.requests, the pricing workers for pricing.results), let its consumers empty it, stop them, "
    "then `rabbitmqctl delete_queue NAME --if-empty` and start everything again: the first part to "
    "connect declares the queue anew."
)


@dataclass
class AmqpDelivery:
    """An incoming RabbitMQ message, settled through the Delivery protocol."""

    message: AbstractIncomingMessage
    queue: str
    transport: AmqpTransport

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
        return bool(self.message.redelivered) or self.failures > 0

    @property
    def failures(self) -> int:
        value = (self.message.headers or {}).get(FAILURES_HEADER, 0)
        return value if isinstance(value, int) else 0

    @property
    def settled(self) -> bool:
        return self.message.processed

    async def ack(self) -> None:
        await self.message.ack()

    async def retry(self) -> None:
        failures = self.failures + 1
        if failures >= DELIVERY_LIMIT:
            log.warning("dead-lettered", queue=self.queue, message_id=self.message_id, failures=failures)
            DEAD_LETTERS.labels(self.queue).inc()
            await self.message.reject(requeue=False)
            return
        await self.transport.republish(self.queue, self.message, failures)
        await self.message.ack()

    async def reject(self) -> None:
        await self.message.reject(requeue=False)


def queue_arguments(queue: str) -> dict[str, object]:
    """Quorum queues (replicated, counting deliveries); all but the dead letters dead-letter to them."""
    arguments: dict[str, object] = {"x-queue-type": "quorum"}
    if queue != DEAD_QUEUE:
        # A queue argument, not a policy: the backstop must hold on every broker the system meets (tests,
        # `up --scaled`, compose) with no step outside AMQP, which cannot set policies. A policy can still
        # lower it at runtime: RabbitMQ applies the smaller of the two (measured on 3.10.8).
        arguments.update(
            {
                "x-delivery-limit": REDELIVERY_BACKSTOP,
                "x-dead-letter-exchange": DEAD_EXCHANGE,
                "x-dead-letter-routing-key": queue,
            }
        )
    return arguments


class AmqpTransport:
    """A robust connection to RabbitMQ (reconnects by itself) with the system's topology declared."""

    def __init__(self, url: str, *, wait_for_broker: bool = False) -> None:
        self.url = url
        self.wait_for_broker = wait_for_broker
        """Whether `connect` waits for a broker that is not up yet (long-running parts) rather than raise
        (one-shot commands such as the audit)."""
        self.connection: AbstractRobustConnection | None = None
        self.channel: AbstractRobustChannel | None = None
        self.exchanges: dict[str, AbstractExchange] = {}
        self.inherited: set[str] = set()
        """Queues an earlier version declared with other arguments, used as they are."""
        self.checked: set[str] = set()
        self._depth_channel: AbstractRobustChannel | None = None
        self._consumers: dict[str, tuple[AbstractRobustChannel, AbstractQueue]] = {}
        """Consumer tag -> its channel and queue, while the consumer takes deliveries."""
        self._handling: set[asyncio.Task[object]] = set()
        """Handlers under way (aio-pika runs each delivery's callback as a task of its own)."""

    async def connect(self) -> None:
        """Connect and declare the topology; with `wait_for_broker`, wait for a broker that is not up yet."""
        # aio-pika's fail_fast (its default) raises when the first attempt fails: a relay started while the
        # broker restarted exited for good, and the orders it should have published waited for a human.
        if self.wait_for_broker:
            log.info("connecting to RabbitMQ, waiting for it if it is not up yet")
        self.connection = await aio_pika.connect_robust(
            self.url, fail_fast=not self.wait_for_broker, reconnect_interval=RECONNECT_INTERVAL_S
        )
        # on_return_raises: aio-pika's default hands a returned mandatory message back as the publish's
        # result, so a publish no queue took would look confirmed.
        self.channel = await self.connection.channel(publisher_confirms=True, on_return_raises=True)
        for binding in BINDINGS:
            if binding.exchange not in self.exchanges:
                self.exchanges[binding.exchange] = await self.channel.declare_exchange(
                    binding.exchange, aio_pika.ExchangeType.TOPIC, durable=True
                )
            queue = await self._declare_queue(self.channel, binding.queue)
            await queue.bind(self.exchanges[binding.exchange], binding.pattern)

    async def _declare_queue(self, channel: AbstractRobustChannel, name: str) -> AbstractQueue:
        if name not in self.checked:
            await self._check_arguments(name)
        if name in self.inherited:
            return await channel.declare_queue(name, passive=True)
        return await channel.declare_queue(name, durable=True, arguments=queue_arguments(name))

    async def _check_arguments(self, name: str) -> None:
        assert self.connection is not None
        # A channel of its own: the broker closes the channel a refused declare was sent on.
        probe = await self.connection.channel()
        try:
            await probe.declare_queue(name, durable=True, arguments=queue_arguments(name), robust=False)
        except aiormq.exceptions.ChannelPreconditionFailed as e:
            # Declared by an earlier version (x-delivery-limit 5): refusing to start would stop pricing,
            # deleting the queue would lose what it holds. Work with it (killed consumers then count
            # toward its old limit, as before) and say how to upgrade it.
            self.inherited.add(name)
            log.warning("queue declared with other arguments", queue=name, broker=str(e), fix=UPGRADE_HINT)
        finally:
            self.checked.add(name)
            with contextlib.suppress(Exception):
                await probe.close()

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()

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
        target = self.exchanges.get(exchange)
        if target is None:
            raise Unroutable(f"exchange {exchange!r} is not part of the topology")
        message = aio_pika.Message(
            body,
            message_id=message_id,
            headers=dict(headers),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        await _confirmed(target, message, routing_key, mandatory)

    async def republish(self, queue: str, message: AbstractIncomingMessage, failures: int) -> None:
        """A copy of `message`, carrying `failures`, at the back of `queue` (through the default exchange)."""
        assert self.channel is not None, "connect() first"
        headers = {k: v for k, v in (message.headers or {}).items() if not k.startswith("x-")}
        copy = aio_pika.Message(
            message.body,
            message_id=message.message_id,
            headers={**headers, FAILURES_HEADER: failures},
            content_type=message.content_type,
            correlation_id=message.correlation_id,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        await _confirmed(self.channel.default_exchange, copy, queue, mandatory=True)

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
        source = await self._declare_queue(channel, queue)

        async def on_message(message: AbstractIncomingMessage) -> None:
            delivery = AmqpDelivery(message, queue, self)
            task = asyncio.current_task()
            if task is not None:
                self._handling.add(task)
            try:
                try:
                    await handler(delivery)
                except Exception:
                    log.exception(
                        "consumer failed", message_id=delivery.message_id, failures=delivery.failures + 1
                    )
                # A cancelled handler (the consumer is killed) skips this: the broker returns the message
                # uncounted by us when the channel closes, as for a killed worker.
                if not delivery.settled:
                    await self._fail(delivery)
            finally:
                if task is not None:
                    self._handling.discard(task)

        tag = await source.consume(on_message)
        self._consumers[tag] = (channel, source)
        try:
            await asyncio.Future()
        finally:
            await self._stop_consuming(channel, source, tag)

    async def drain(self, seconds: float) -> None:
        """Stop taking deliveries on every consumer, then wait up to `seconds` for the handlers
        under way to settle their messages (a SIGTERM'd worker finishes its quote, publishes, acks).

        Consumers stay open for those acks until they are cancelled; what a handler still holds after
        them goes back to the queue when its channel closes, as a killed worker's would."""
        for tag, (channel, source) in list(self._consumers.items()):
            await self._cancel(channel, source, tag)
        handling = set(self._handling)
        if not handling:
            return
        log.info("finishing deliveries under way before stopping", deliveries=len(handling), seconds=seconds)
        _, pending = await asyncio.wait(handling, timeout=seconds)
        if pending:
            log.warning(
                "deliveries still under way when the drain ended go back to the queue", count=len(pending)
            )

    async def _cancel(self, channel: AbstractRobustChannel, source: AbstractQueue, tag: str) -> None:
        """basic.cancel: the broker sends this consumer nothing more (what it holds, it may still ack)."""
        if self._consumers.pop(tag, None) is None:
            return
        assert self.connection is not None
        if self.connection.is_closed or channel.is_closed:
            return
        try:
            async with asyncio.timeout(5):  # a broker going away mid-cancel must not hold up shutdown
                await source.cancel(tag)
        except Exception as e:
            log.debug("consumer cancelled with its connection", error=repr(e))

    async def _stop_consuming(self, channel: AbstractRobustChannel, source: AbstractQueue, tag: str) -> None:
        assert self.connection is not None
        await self._cancel(channel, source, tag)
        if self.connection.is_closed or channel.is_closed:
            return  # the broker has returned what we held; a robust channel would wait for a reconnect
        try:
            async with asyncio.timeout(5):
                await channel.close()
        except Exception as e:
            log.debug("consumer closed with its connection", error=repr(e))

    async def _fail(self, delivery: AmqpDelivery) -> None:
        try:
            await delivery.retry()
        except Exception:
            # Not republished (broker unreachable, queue missing): hand it back to the broker rather than
            # hold it unacked, which would stall a consumer with prefetch 1. Counts toward the backstop only.
            log.exception("could not requeue a failed message", message_id=delivery.message_id)
            if not delivery.settled:
                try:
                    await delivery.message.nack(requeue=True)
                except Exception as e:  # the channel is gone: the broker has returned it already
                    log.debug("could not hand a message back", message_id=delivery.message_id, error=repr(e))


async def _confirmed(
    exchange: AbstractExchange, message: aio_pika.Message, routing_key: str, mandatory: bool
) -> None:
    """Publish and return once the broker confirmed it; any other outcome is a PublishFailed."""
    try:
        await exchange.publish(message, routing_key=routing_key, mandatory=mandatory)
    except aiormq.exceptions.PublishError as e:
        raise Unroutable(f"no queue is bound to exchange {exchange.name!r} for {routing_key!r}") from e
    except (aiormq.exceptions.AMQPError, aiormq.exceptions.ChannelInvalidStateError, OSError) as e:
        raise PublishFailed(f"{message.message_id} was not confirmed: {e!r}") from e
