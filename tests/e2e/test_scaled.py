"""`backbone up --scaled`: compose.yaml's topology as local processes, behind one gateway address."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import psutil
import pytest

from backbone.migrate import migrate
from http_edge.identity import mint_token
from orders_core.lifecycle import Role
from tests.conftest import JWT_SECRET, PostgresServer, RabbitMQ, start_process, wait_for_health
from tests.journeys import NEW_ORDER, answered, submit
from tests.meshes import cube_stl


def free_block(size: int = 112) -> int:
    """A base port whose next `size` ports are all free (the topology uses base..base+4 and base+100..)."""
    for base in range(21000, 60000, 211):
        if all(_free(base + i) for i in (*range(5), *range(100, size))):
            return base
    raise RuntimeError("no free block of ports")


def _free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@dataclass
class Scaled:
    base_url: str
    port: int
    process: subprocess.Popen[bytes]

    def parts(self) -> list[tuple[str, psutil.Process]]:
        found = []
        for child in psutil.Process(self.process.pid).children():
            try:
                command = child.cmdline()
            except psutil.Error:  # a part that just died and is not reaped yet
                continue
            if "backbone.cli" in command:
                found.append((" ".join(command[3:]), child))
        return found


@pytest.fixture(scope="module")
def scaled(
    postgres: PostgresServer, rabbitmq: RabbitMQ, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Scaled]:
    url = postgres.create_database("scaled_up")
    migrate(url)
    port = free_block()
    env = {
        "DATABASE_URL": url,
        "AMQP_URL": rabbitmq.vhost(f"up-{uuid.uuid4().hex[:8]}"),
        "BACKBONE_HOME": str(tmp_path_factory.mktemp("scaled-up")),
        "JWT_SECRET": JWT_SECRET,
    }
    process = start_process(["up", "--scaled", "--port", str(port)], env, port)
    base = f"http://127.0.0.1:{port}"
    try:
        for replica in range(1, 5):  # both command and both read API replicas, not just the gateway
            wait_for_health(f"http://127.0.0.1:{port + replica}", process, seconds=90)
        yield Scaled(base, port, process)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait(60)


def client(scaled: Scaled, role: str, sub: str) -> httpx.Client:
    token = mint_token(JWT_SECRET, Role(role), sub)
    return httpx.Client(base_url=scaled.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def test_every_part_runs_as_its_own_process(scaled: Scaled) -> None:
    commands = sorted(name for name, _ in scaled.parts())
    assert commands.count("api") == 2 and commands.count("read-api") == 2
    assert commands.count("projector mes") == 2 and commands.count("projector shop") == 2
    assert (
        commands.count("relay") == 2
        and commands.count("worker pricing") == 3
        and commands.count("results") == 1
        and commands.count("audit --every 300") == 1
    )


def test_an_order_is_priced_and_visible_through_the_gateway(scaled: Scaled) -> None:
    with client(scaled, "customer", "scaled-ann") as ann, client(scaled, "operator", "scaled-olga") as olga:
        order = answered(ann, submit(ann, cube_stl()))
        order_id = order["order_id"]
        assert order["status"] == "PRICE_CALCULATED"
        position = ann.get(f"/orders/{order_id}").headers["X-Position"]
        shop = ann.get(f"/shop/orders/{order_id}", params={"min_position": position})
        assert shop.status_code == 200 and shop.json()["status"] == "PRICE_CALCULATED"
        found = olga.get("/mes/orders", params={"q": order["number"], "min_position": position}).json()
        assert [o["order_id"] for o in found["items"]] == [order_id]


def test_parts_without_an_api_serve_metrics(scaled: Scaled) -> None:
    text = httpx.get(f"http://127.0.0.1:{scaled.port + 100}/metrics").text
    assert "backbone_projection_active" in text


def test_a_part_that_dies_is_started_again(scaled: Scaled) -> None:
    workers = [p for name, p in scaled.parts() if name == "worker pricing"]
    workers[0].kill()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        alive = [p for name, p in scaled.parts() if name == "worker pricing" and p.is_running()]
        if len(alive) == 3 and workers[0].pid not in {p.pid for p in alive}:
            return
        time.sleep(0.25)
    raise AssertionError("the killed worker was not restarted")


def test_while_a_replica_is_down_the_gateway_sends_its_requests_to_the_other(scaled: Scaled) -> None:
    port = scaled.port + 1
    apis = [p for name, p in scaled.parts() if name == "api"]
    killed = next(p for p in apis if any(c.laddr.port == port for c in p.net_connections("tcp")))
    with client(scaled, "customer", "scaled-failover") as ann:
        order_id = submit(ann, cube_stl())
        killed.kill()
        killed.wait(10)
        answers, while_down = [], 0
        # Until the supervisor's restart listens again: a read and a command with a body, to the gateway.
        while not _listening(port):
            answers.append(ann.get(f"/orders/{order_id}").status_code)
            answers.append(ann.post("/orders", json=NEW_ORDER).status_code)
            while_down += 1
    assert while_down >= 2, "the replica came back before the gateway was asked anything"
    assert set(answers) == {200, 201}, answers


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_interrupting_stops_every_part(scaled: Scaled) -> None:
    parts = [p for _, p in scaled.parts()]
    scaled.process.send_signal(signal.SIGINT)
    assert scaled.process.wait(60) == 0
    _, alive = psutil.wait_procs(parts, timeout=10)
    assert not alive
