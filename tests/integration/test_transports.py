"""Both transports keep the same delivery contract: one base test case, one subclass per backend."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aio_pika
import pytest

from backbone.transport_amqp import AmqpTransport, queue_arguments
from backbone.transport_memory import MemoryTransport
from orders_core.contracts import (
    BINDINGS,
    DEAD_QUEUE,
    DELIVERY_LIMIT,
    ORDERS_EXCHANGE,
    PRICING_REQUESTS,
    REDELIVERY_BACKSTOP,
    RESULTS_EXCHANGE,
    Delivery,
    PublishFailed,
    Transport,
    Unroutable,
    topic_matches,
)
from tests.conftest import RabbitMQ

Seen = list[tuple[str, bool]]
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def collect(
    transport: Transport, queue: str, react: Callable[[Delivery], Awaitable[None]], seconds: float
) -> Seen:
    """Consume `queue` for a while, reacting to each delivery; returns (message id, redelivered) seen."""
    seen: Seen = []

    async def handler(delivery: Delivery) -> None:
        seen.append((delivery.message_id, delivery.redelivered))
        await react(delivery)

    task = asyncio.create_task(transport.consume(queue, handler, 4))
    await asyncio.sleep(seconds)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return seen


async def ack(delivery: Delivery) -> None:
    await delivery.ack()


class TransportContract:
    """What the relay, workers and results consumer rely on, whichever broker carries the messages."""

    settle_seconds = 0.3

    @pytest.fixture
    async def transport(self) -> AsyncIterator[Transport]:
        raise NotImplementedError

    async def consumer_for(self, transport: Transport) -> Transport:
        """A connection to `transport`'s broker that a test may kill, as a worker process is killed."""
        return transport

    async def kill(self, consumer: Transport, consuming: asyncio.Task[None]) -> None:
        """The consumer's process dies while its handler holds a message."""
        consuming.cancel()
        await asyncio.gather(consuming, return_exceptions=True)

    async def publish(
        self, transport: Transport, message_id: str, key: str = "order.submitted", *, mandatory: bool = True
    ) -> None:
        await transport.publish(
            ORDERS_EXCHANGE, key, b"{}", message_id=message_id, headers={"trace": "t-1"}, mandatory=mandatory
        )

    async def die_holding(self, transport: Transport, times: int) -> list[tuple[int, bool]]:
        """Let `times` consumers in turn take the next pricing request and die holding it; returns each
        delivery's (failures, redelivered)."""
        seen: list[tuple[int, bool]] = []
        for _ in range(times):
            consumer = await self.consumer_for(transport)
            holding, dead = asyncio.Event(), asyncio.get_running_loop().create_future()

            async def hold(delivery: Delivery, holding: asyncio.Event = holding, dead: Any = dead) -> None:
                seen.append((delivery.failures, delivery.redelivered))
                holding.set()
                await dead  # cancelled once the consumer is dead: a killed process runs nothing after

            consuming = asyncio.create_task(consumer.consume(PRICING_REQUESTS, hold, 1))
            try:
                await asyncio.wait_for(holding.wait(), 10)
            except TimeoutError:  # nothing left to take (dead-lettered, as past the backstop)
                return seen
            finally:
                await self.kill(consumer, consuming)
                dead.cancel()
        return seen

    async def test_a_message_is_delivered_once_when_acked(self, transport: Transport) -> None:
        await self.publish(transport, "m-1")
        assert await collect(transport, PRICING_REQUESTS, ack, self.settle_seconds) == [("m-1", False)]

    async def test_a_drain_lets_the_delivery_under_way_settle_and_takes_no_more(
        self, transport: Transport
    ) -> None:
        """A stopping worker (SIGTERM): no new deliveries, the one under way finishes and is acked."""
        consumer = await self.consumer_for(transport)
        await self.publish(transport, "d-1")
        await self.publish(transport, "d-2")
        taken, finish = asyncio.Event(), asyncio.Event()
        seen: list[str] = []

        async def slow(delivery: Delivery) -> None:
            seen.append(delivery.message_id)
            taken.set()
            await finish.wait()
            await delivery.ack()

        consuming = asyncio.create_task(consumer.consume(PRICING_REQUESTS, slow, 1))
        await asyncio.wait_for(taken.wait(), 10)
        draining = asyncio.create_task(consumer.drain(30))
        await asyncio.sleep(self.settle_seconds)
        assert not draining.done(), "the drain waits for the delivery under way"
        finish.set()
        await asyncio.wait_for(draining, 10)
        await asyncio.sleep(self.settle_seconds)  # nothing more is delivered once drained
        consuming.cancel()
        await asyncio.gather(consuming, return_exceptions=True)
        if consumer is not transport:
            await consumer.close()
        assert seen == ["d-1"]
        assert await transport.depth(PRICING_REQUESTS) == 1  # d-2, acked by no one, still waits

    async def test_only_submitted_orders_reach_the_pricing_queue(self, transport: Transport) -> None:
        await self.publish(transport, "m-init", key="order.initiated", mandatory=False)
        await self.publish(transport, "m-sub")
        assert await collect(transport, PRICING_REQUESTS, ack, self.settle_seconds) == [("m-sub", False)]

    async def test_a_mandatory_message_no_queue_is_bound_for_is_refused(self, transport: Transport) -> None:
        with pytest.raises(Unroutable) as refused:
            await self.publish(transport, "m-lost", key="order.initiated")
        # The projection runner retries a ConnectionError (the relay's batch), never parks it.
        assert isinstance(refused.value, PublishFailed) and isinstance(refused.value, ConnectionError)
        with pytest.raises(Unroutable):
            await transport.publish(RESULTS_EXCHANGE + ".nowhere", "x", b"{}", message_id="m-x", headers={})

    async def test_a_retried_message_comes_back_redelivered(self, transport: Transport) -> None:
        await self.publish(transport, "m-2")
        attempts: list[int] = []

        async def fail_once(delivery: Delivery) -> None:
            attempts.append(1)
            await (delivery.retry() if len(attempts) == 1 else delivery.ack())

        seen = await collect(transport, PRICING_REQUESTS, fail_once, self.settle_seconds * 3)
        assert seen == [("m-2", False), ("m-2", True)]

    async def test_a_handler_that_raises_gets_the_message_again(self, transport: Transport) -> None:
        await self.publish(transport, "m-3")
        attempts: list[int] = []

        async def crash_once(delivery: Delivery) -> None:
            attempts.append(1)
            if len(attempts) == 1:
                raise RuntimeError("worker fault")
            await delivery.ack()

        seen = await collect(transport, PRICING_REQUESTS, crash_once, self.settle_seconds * 3)
        assert [m for m, _ in seen] == ["m-3", "m-3"]

    async def test_a_rejected_message_goes_to_the_dead_letter_queue(self, transport: Transport) -> None:
        await self.publish(transport, "poison")

        async def reject(delivery: Delivery) -> None:
            await delivery.reject()

        assert await collect(transport, PRICING_REQUESTS, reject, self.settle_seconds) == [("poison", False)]
        dead = await collect(transport, DEAD_QUEUE, ack, self.settle_seconds)
        assert [m for m, _ in dead] == ["poison"]

    async def test_a_message_that_always_fails_is_dead_lettered_at_the_limit(
        self, transport: Transport
    ) -> None:
        await self.publish(transport, "always-fails")
        failures: list[int] = []

        async def retry(delivery: Delivery) -> None:
            failures.append(delivery.failures)
            await delivery.retry()

        seen = await collect(transport, PRICING_REQUESTS, retry, self.settle_seconds * 8)
        assert seen == [("always-fails", False)] + [("always-fails", True)] * (DELIVERY_LIMIT - 1)
        assert failures == list(range(DELIVERY_LIMIT))
        dead = await collect(transport, DEAD_QUEUE, ack, self.settle_seconds)
        assert [m for m, _ in dead] == ["always-fails"]

    async def test_a_handler_that_raises_one_time_short_of_the_limit_still_handles_it(
        self, transport: Transport
    ) -> None:
        await self.publish(transport, "fails-4")
        attempts: list[tuple[int, str | None]] = []

        async def crash_until_the_last_attempt(delivery: Delivery) -> None:
            attempts.append((delivery.failures, delivery.headers.get("trace")))
            if delivery.failures < DELIVERY_LIMIT - 1:
                raise RuntimeError("worker fault")
            await delivery.ack()

        await collect(transport, PRICING_REQUESTS, crash_until_the_last_attempt, self.settle_seconds * 8)
        assert attempts == [(n, "t-1") for n in range(DELIVERY_LIMIT)]
        assert await collect(transport, DEAD_QUEUE, ack, self.settle_seconds) == []

    async def test_a_message_whose_consumers_die_holding_it_is_not_poison(self, transport: Transport) -> None:
        await self.publish(transport, "sound")
        deaths = 3 * DELIVERY_LIMIT
        seen = await self.die_holding(transport, deaths)
        assert seen == [(0, False)] + [(0, True)] * (deaths - 1)
        assert await collect(transport, PRICING_REQUESTS, ack, self.settle_seconds) == [("sound", True)]
        assert await collect(transport, DEAD_QUEUE, ack, self.settle_seconds) == []

    async def test_a_message_that_kills_every_consumer_is_dead_lettered_past_the_backstop(
        self, transport: Transport
    ) -> None:
        await self.publish(transport, "killer")
        seen = await self.die_holding(transport, REDELIVERY_BACKSTOP + 5)
        assert len(seen) == REDELIVERY_BACKSTOP + 1
        dead = await collect(transport, DEAD_QUEUE, ack, self.settle_seconds)
        assert [m for m, _ in dead] == ["killer"]


class TestMemoryTransport(TransportContract):
    @pytest.fixture
    async def transport(self) -> AsyncIterator[Transport]:
        memory = MemoryTransport()
        await memory.connect()
        yield memory
        await memory.close()


class TestAmqpTransport(TransportContract):
    settle_seconds = 1.0

    @pytest.fixture
    async def transport(self, rabbitmq: RabbitMQ) -> AsyncIterator[Transport]:
        amqp = AmqpTransport(rabbitmq.vhost(f"t-{uuid.uuid4().hex[:8]}"))
        await amqp.connect()
        yield amqp
        await amqp.close()

    async def consumer_for(self, transport: Transport) -> Transport:
        assert isinstance(transport, AmqpTransport)
        consumer = AmqpTransport(transport.url)
        await consumer.connect()
        return consumer

    async def kill(self, consumer: Transport, consuming: asyncio.Task[None]) -> None:
        await consumer.close()  # the broker sees the connection go with the message unacked
        await super().kill(consumer, consuming)


@pytest.mark.parametrize(
    ("pattern", "key", "matches"),
    [("order.submitted", "order.submitted", True), ("order.*", "order.submitted", True),
     ("order.*", "order.a.b", False), ("#", "pricing.requests", True), ("order.#", "order", True),
     ("a.#.z", "a.b.c.z", True), ("a.#.z", "a.b.c", False)],
)  # fmt: skip
def test_topic_patterns_match_as_in_amqp(pattern: str, key: str, matches: bool) -> None:
    assert topic_matches(pattern, key) is matches


async def test_queues_an_earlier_version_declared_are_used_as_they_are(rabbitmq: RabbitMQ) -> None:
    url = rabbitmq.vhost(f"upgrade-{uuid.uuid4().hex[:8]}")
    earlier = await aio_pika.connect(url)
    channel = await earlier.channel()
    for binding in BINDINGS:  # as the version before the backstop declared them
        arguments = queue_arguments(binding.queue)
        if "x-delivery-limit" in arguments:
            arguments["x-delivery-limit"] = DELIVERY_LIMIT
        await channel.declare_queue(binding.queue, durable=True, arguments=arguments)
    await earlier.close()
    amqp = AmqpTransport(url)
    await amqp.connect()
    try:
        assert amqp.inherited == {b.queue for b in BINDINGS if b.queue != DEAD_QUEUE}
        await amqp.publish(ORDERS_EXCHANGE, "order.submitted", b"{}", message_id="after-upgrade", headers={})
        assert await collect(amqp, PRICING_REQUESTS, ack, 1.0) == [("after-upgrade", False)]
    finally:
        await amqp.close()


async def test_amqp_queue_depth_follows_the_broker(rabbitmq: RabbitMQ) -> None:
    amqp = AmqpTransport(rabbitmq.vhost(f"depth-{uuid.uuid4().hex[:8]}"))
    await amqp.connect()
    try:
        assert await amqp.depth(PRICING_REQUESTS) == 0
        for i in range(3):
            await amqp.publish(ORDERS_EXCHANGE, "order.submitted", b"{}", message_id=f"d-{i}", headers={})
        await asyncio.sleep(0.5)
        assert await amqp.depth(PRICING_REQUESTS) == 3
    finally:
        await amqp.close()
