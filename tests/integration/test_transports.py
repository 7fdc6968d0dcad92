"""Both transports keep the same delivery contract: one base test case, one subclass per backend."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from backbone.transport_amqp import AmqpTransport
from backbone.transport_memory import MemoryTransport, topic_matches
from orders_core.contracts import (
    DEAD_QUEUE,
    DELIVERY_LIMIT,
    ORDERS_EXCHANGE,
    PRICING_REQUESTS,
    Delivery,
    Transport,
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

    async def publish(self, transport: Transport, message_id: str, key: str = "order.submitted") -> None:
        await transport.publish(ORDERS_EXCHANGE, key, b"{}", message_id=message_id, headers={"trace": "t-1"})

    async def test_a_message_is_delivered_once_when_acked(self, transport: Transport) -> None:
        await self.publish(transport, "m-1")
        assert await collect(transport, PRICING_REQUESTS, ack, self.settle_seconds) == [("m-1", False)]

    async def test_only_submitted_orders_reach_the_pricing_queue(self, transport: Transport) -> None:
        await self.publish(transport, "m-init", key="order.initiated")
        await self.publish(transport, "m-sub")
        assert await collect(transport, PRICING_REQUESTS, ack, self.settle_seconds) == [("m-sub", False)]

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

    async def test_a_message_that_always_fails_is_dead_lettered_after_the_limit(
        self, transport: Transport
    ) -> None:
        await self.publish(transport, "always-fails")

        async def retry(delivery: Delivery) -> None:
            await delivery.retry()

        seen = await collect(transport, PRICING_REQUESTS, retry, self.settle_seconds * 8)
        assert len(seen) >= DELIVERY_LIMIT and {m for m, _ in seen} == {"always-fails"}
        dead = await collect(transport, DEAD_QUEUE, ack, self.settle_seconds)
        assert [m for m, _ in dead] == ["always-fails"]


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


@pytest.mark.parametrize(
    ("pattern", "key", "matches"),
    [("order.submitted", "order.submitted", True), ("order.*", "order.submitted", True),
     ("order.*", "order.a.b", False), ("#", "pricing.requests", True), ("order.#", "order", True),
     ("a.#.z", "a.b.c.z", True), ("a.#.z", "a.b.c", False)],
)  # fmt: skip
def test_topic_patterns_match_as_in_amqp(pattern: str, key: str, matches: bool) -> None:
    assert topic_matches(pattern, key) is matches


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
