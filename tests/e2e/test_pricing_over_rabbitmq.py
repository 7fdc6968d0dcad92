"""Pricing through a real RabbitMQ with every part in its own process: the API, the relay, pricing
workers and the results consumer. Faults: a worker killed mid-quote, a relay that dies after publishing
but before saving its position, poison messages, and a broker restart under load."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest
import trimesh

from backbone.database import eventsourcing_env
from backbone.transport_amqp import RECONNECT_INTERVAL_S, AmqpTransport
from backbone.transport_memory import MemoryTransport
from backbone.wiring import runner_for
from orders_core.application import OrdersApplication
from orders_core.contracts import DEAD_QUEUE, ORDERS_EXCHANGE, Delivery
from orders_core.relay import BlockingPublisher, Outgoing, Relay
from tests.conftest import (
    BACKBONE,
    PostgresServer,
    RabbitMQ,
    RunningApi,
    free_port,
    parts_env,
    start_process,
    stop_process,
)
from tests.conftest import wait_for_health as wait_healthy
from tests.journeys import answered, submit
from tests.meshes import binary_stl, cube_stl, open_box_stl


@dataclass
class Topology:
    """The scaled-out parts, each a `backbone` process, on one database and one RabbitMQ vhost."""

    api: RunningApi
    amqp_url: str
    env: dict[str, str]
    worker_home: Path
    parts: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        env = self.env
        if args[0] == "worker":  # workers share no filesystem with the API: models come from PostgreSQL
            env = {**env, "BACKBONE_HOME": str(self.worker_home)}
        self.parts[name] = start_process(list(args), env, 0)
        return self.parts[name]

    def stop_all(self) -> None:
        for process in self.parts.values():
            stop_process(process)


@pytest.fixture(scope="module")
def topology(
    postgres: PostgresServer, rabbitmq: RabbitMQ, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Topology]:
    env = parts_env(postgres, rabbitmq, tmp_path_factory, "scaled")
    url, amqp, home = env["DATABASE_URL"], env["AMQP_URL"], env["BACKBONE_HOME"]
    port = free_port()
    api_process = start_process(["api"], env, port)
    base = f"http://127.0.0.1:{port}"
    wait_healthy(base, api_process)
    worker_home = tmp_path_factory.mktemp("worker-home")
    topology = Topology(RunningApi(base, url, Path(home), api_process), amqp, env, worker_home)
    topology.start("relay", "relay")
    topology.start("worker-a", "worker", "pricing")
    topology.start("results", "results")
    try:
        yield topology
    finally:
        topology.stop_all()
        stop_process(api_process)


@pytest.fixture(scope="module")
def customer(topology: Topology) -> Iterator[httpx.Client]:
    with topology.api.client("customer", "rabbit-customer") as client:
        yield client


def quote_events(client: httpx.Client, order_id: str) -> list[str]:
    history = client.get(f"/orders/{order_id}/history").json()
    return [h["event"] for h in history if h["event"] in ("PriceCalculated", "ModelRejected")]


def sphere_stl(subdivisions: int) -> bytes:
    return binary_stl(trimesh.creation.icosphere(subdivisions=subdivisions, radius=9.0).triangles)


def dead_letters(amqp_url: str, seconds: float = 2.0) -> list[str]:
    async def drain() -> list[str]:
        transport = AmqpTransport(amqp_url)
        await transport.connect()
        seen: list[str] = []

        async def take(delivery: Delivery) -> None:
            seen.append(delivery.message_id)
            await delivery.ack()

        task = asyncio.create_task(transport.consume(DEAD_QUEUE, take, 10))
        await asyncio.sleep(seconds)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await transport.close()
        return seen

    return asyncio.run(drain())


def test_a_submitted_order_is_priced_through_rabbitmq(customer: httpx.Client) -> None:
    order = answered(customer, submit(customer, cube_stl(10.0), material_code="AG925"))
    assert order["status"] == "PRICE_CALCULATED"
    assert order["quote"]["figures"]["mass_g"] == pytest.approx(10.4)


def test_the_worker_stores_the_preview_in_postgresql(topology: Topology, customer: httpx.Client) -> None:
    """The worker shares no filesystem with the API: it writes the preview beside the models, in
    blobs.previews, as the pricing role."""
    order = answered(customer, submit(customer, cube_stl(10.0)))
    sha = order["quote"]["preview_sha256"]
    assert sha
    with psycopg.connect(topology.api.database_url) as conn:
        row = conn.execute(
            "SELECT size_bytes, substr(content, 1, 4) FROM blobs.previews WHERE sha256 = %s", (sha,)
        )
        size, magic = row.fetchone() or (0, b"")
    assert size > 0 and bytes(magic) == b"glTF"


def test_a_re_priced_order_is_priced_again_through_rabbitmq(customer: httpx.Client) -> None:
    # `order.reprice_requested` is bound to the pricing queue: the relay's mandatory publish is routed.
    order_id = submit(customer, cube_stl(10.0), material_code="AG925")
    first = answered(customer, order_id)
    assert customer.post(f"/orders/{order_id}/reprice").status_code == 200
    again = answered(customer, order_id)
    assert again["status"] == "PRICE_CALCULATED"
    assert again["quote"]["valid_until"] > first["quote"]["valid_until"]
    assert quote_events(customer, order_id).count("PriceCalculated") == 2


def test_a_model_with_a_hole_ends_rejected_with_its_reason(customer: httpx.Client) -> None:
    order = answered(customer, submit(customer, open_box_stl()))
    assert order["status"] == "REJECTED" and "hole" in order["rejection_reason"]


def test_poison_messages_end_in_the_dead_letter_queue(topology: Topology) -> None:
    async def publish() -> None:
        transport = AmqpTransport(topology.amqp_url)
        await transport.connect()
        await transport.publish(
            ORDERS_EXCHANGE, "order.submitted", b"not json", message_id="poison-1", headers={}
        )
        await transport.close()

    asyncio.run(publish())
    deadline = time.monotonic() + 20
    seen: list[str] = []
    while "poison-1" not in seen and time.monotonic() < deadline:
        seen += dead_letters(topology.amqp_url, 1.0)
    assert "poison-1" in seen


def test_a_worker_killed_mid_quote_loses_nothing_and_prices_once(
    topology: Topology, customer: httpx.Client
) -> None:
    model = sphere_stl(7)  # 327,680 triangles: long enough to be killed in the middle of
    order_ids = [submit(customer, model) for _ in range(6)]
    time.sleep(0.3)
    topology.parts["worker-a"].send_signal(signal.SIGKILL)
    topology.parts["worker-a"].wait()
    topology.start("worker-b", "worker", "pricing")
    for order_id in order_ids:
        assert answered(customer, order_id, 120)["status"] == "PRICE_CALCULATED"
        assert quote_events(customer, order_id) == ["PriceCalculated"]


class RelayKilled(BaseException):
    """The relay's process dying: not an error the runner handles (it would retry or narrow one down), but
    the end of everything it was doing, as a SIGKILL would be."""


class PublishThenDie:
    """A publisher that gets the batch confirmed by the broker, then dies before the position is saved."""

    def __init__(self, inner: BlockingPublisher) -> None:
        self.inner = inner
        self.published: list[str] = []

    def __call__(self, messages: list[Outgoing]) -> None:
        self.inner(messages)
        self.published += [m.message_id for m in messages]
        raise RelayKilled("relay killed after the broker confirmed, before its position was saved")


def test_a_relay_dying_after_publish_causes_a_duplicate_but_a_single_effect(
    topology: Topology, customer: httpx.Client
) -> None:
    stop_process(topology.parts.pop("relay"))  # this test is the relay now
    order_id = submit(customer, cube_stl(7.0))
    orders = OrdersApplication(env=eventsourcing_env(topology.api.database_url, pool_size=2))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    transport = AmqpTransport(topology.amqp_url)
    try:
        asyncio.run_coroutine_threadsafe(transport.connect(), loop).result(30)
        dying = PublishThenDie(BlockingPublisher(transport, loop))
        runner = runner_for(Relay(orders, dying), topology.api.database_url, "relay")
        before, submitted_at = runner.position(), orders.position()
        assert before < submitted_at, "the stopped relay must not have published the submission"
        with pytest.raises(RelayKilled):
            runner.catch_up()
        assert runner.position() == before and dying.published
        healthy = runner_for(
            Relay(orders, BlockingPublisher(transport, loop)), topology.api.database_url, "relay"
        )
        assert healthy.catch_up() >= submitted_at
    finally:
        asyncio.run_coroutine_threadsafe(transport.close(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        orders.close()
        topology.start("relay", "relay")
    assert answered(customer, order_id)["status"] == "PRICE_CALCULATED"
    time.sleep(2)  # let the duplicate arrive too
    assert quote_events(customer, order_id) == ["PriceCalculated"]


def test_a_broker_restart_under_load_loses_no_order(
    topology: Topology, rabbitmq: RabbitMQ, customer: httpx.Client
) -> None:
    order_ids: list[str] = []
    submitting = threading.Thread(
        target=lambda: order_ids.extend(submit(customer, cube_stl(6.0)) for _ in range(20))
    )
    submitting.start()
    time.sleep(0.5)
    rabbitmq.restart()
    submitting.join()
    for order_id in order_ids:
        assert answered(customer, order_id, 120)["status"] == "PRICE_CALCULATED"
        assert quote_events(customer, order_id) == ["PriceCalculated"]


def wait_for_metrics(port: int, process: subprocess.Popen[bytes]) -> None:
    """Until the part serves /metrics: it is running and about to connect to the broker."""
    for _ in range(600):
        assert process.poll() is None, f"the part exited with {process.returncode}"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("the part never served /metrics")


def test_parts_started_while_the_broker_is_down_wait_for_it(
    topology: Topology, rabbitmq: RabbitMQ, customer: httpx.Client
) -> None:
    """A relay and a worker (re)started during a broker outage wait for it, then carry on: with aio-pika's
    fail-fast first connection they exited, and the orders stayed SUBMITTED until a human came."""
    for name in ("relay", "worker-a"):
        stop_process(topology.parts.pop(name))
    rabbitmq.stop()
    try:
        ports = {"relay": free_port(), "worker-a": free_port()}
        for name, args in (("relay", ["relay"]), ("worker-a", ["worker", "pricing"])):
            topology.env["METRICS_PORT"] = str(ports[name])
            topology.start(name, *args)
        for name, port in ports.items():
            wait_for_metrics(port, topology.parts[name])
        time.sleep(2 * RECONNECT_INTERVAL_S + 1)  # more than one failed attempt to reach the broker
        assert all(topology.parts[n].poll() is None for n in ports), "a part gave up on the broker"
    finally:
        topology.env.pop("METRICS_PORT", None)
        rabbitmq.start()
    order_id = submit(customer, cube_stl(5.0))
    assert answered(customer, order_id, 120)["status"] == "PRICE_CALCULATED"


def test_a_part_waiting_for_the_broker_stops_on_sigterm(topology: Topology, rabbitmq: RabbitMQ) -> None:
    rabbitmq.stop()
    try:
        waiting = subprocess.Popen(
            [str(BACKBONE), "worker", "pricing"],
            env={**os.environ, **topology.env},
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert waiting.stderr is not None
            for line in waiting.stderr:  # once it logs the wait, its signal handlers are in place
                if "waiting for it if it is not up yet" in line:
                    break
            waiting.send_signal(signal.SIGTERM)
            assert waiting.wait(30) == 0
        finally:
            waiting.kill()
            waiting.wait()
    finally:
        rabbitmq.start()


def test_the_memory_transport_is_what_runs_without_amqp_url() -> None:
    from backbone.settings import Settings
    from backbone.wiring import transport_for

    settings = Settings.from_env({"BACKBONE_HOME": "/tmp/unused-home", "JWT_SECRET": "x" * 40})
    assert isinstance(transport_for(settings), MemoryTransport)
