"""The read side on a PostgreSQL hot standby, for real: projectors write on the primary, the read API serves
from a streaming replica made with `pg_basebackup -R`.

The read API's process is given a DATABASE_URL that reaches nothing: everything it does, it does on the
standby, so the read role needs nothing on the primary. Replication lag is made on purpose by pausing the
standby's WAL replay.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from backbone.database import start_embedded
from backbone.migrate import migrate
from backbone.rabbitmq import free_port
from tests.conftest import RunningApi, start_process, stop_process, wait_for_health
from tests.journeys import NEW_ORDER
from tests.replication import Standby, remove, start_standby, wait_replayed


@pytest.fixture(scope="module")
def primary(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A primary of its own, with the backbone's database migrated."""
    pgdata = tmp_path_factory.mktemp("primary") / "pgdata"
    server = start_embedded(pgdata, cleanup_mode="delete")
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute("CREATE DATABASE backbone")
    host = psycopg.conninfo.conninfo_to_dict(server)["host"]
    url = f"postgresql://postgres@/backbone?host={host}"
    migrate(url)
    return url


@pytest.fixture(scope="module")
def standby(primary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standby]:
    host = psycopg.conninfo.conninfo_to_dict(primary)["host"]
    replica = start_standby(str(host), tmp_path_factory.mktemp("replica"))
    try:
        yield replica
    finally:
        remove(replica)


def _serve(command: str, env: dict[str, str], home: Path) -> Iterator[RunningApi]:
    from tests.conftest import JWT_SECRET

    port = free_port()
    process = start_process([command], {**env, "BACKBONE_HOME": str(home), "JWT_SECRET": JWT_SECRET}, port)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(base, process)
        yield RunningApi(base, env["DATABASE_URL"], home, process)
    finally:
        stop_process(process)


@pytest.fixture(scope="module")
def writer(primary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApi]:
    """`backbone up` on the primary: the command API and the projectors that write the views."""
    yield from _serve("up", {"DATABASE_URL": primary}, tmp_path_factory.mktemp("writer"))


@pytest.fixture(scope="module")
def reader(
    standby: Standby, writer: RunningApi, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningApi]:
    """`backbone read-api` on the standby, as the read role; its DATABASE_URL leads nowhere."""
    env = {
        "DATABASE_URL": "postgresql://nobody@/backbone?host=/nonexistent-primary",
        "DATABASE_URL_READ": standby.url("backbone", role="backbone_read"),
    }
    yield from _serve("read-api", env, tmp_path_factory.mktemp("reader"))


def _create(writer: RunningApi, title: str) -> tuple[str, int]:
    with writer.client("customer", "cust-replica") as customer:
        created = customer.post("/orders", json={**NEW_ORDER, "item_title": title})
    assert created.status_code == 201, created.text
    return created.json()["order_id"], int(created.headers["X-Position"])


def test_the_read_api_serves_from_the_standby_alone(reader: RunningApi, standby: Standby) -> None:
    with psycopg.connect(standby.url("backbone"), autocommit=True) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
    assert httpx.get(f"{reader.base_url}/health/ready").status_code == 200
    health = httpx.get(f"{reader.base_url}/health").json()
    assert set(health["projections"]) >= {"mes", "shop"}, health


def test_min_position_reads_your_write_across_replication_lag(
    writer: RunningApi, reader: RunningApi, standby: Standby
) -> None:
    order_id, position = _create(writer, "Replicated ring")
    with reader.client("customer", "cust-replica") as customer:
        # Replication is quick here, but the view on the standby may still be behind: min_position waits.
        found = customer.get(f"/shop/orders/{order_id}", params={"min_position": position})
        assert found.status_code == 200, found.text
        assert found.json()["order_id"] == order_id
        assert int(found.headers["X-Position"]) >= position

        standby.pause_replay()
        try:
            later_id, later = _create(writer, "Lagging ring")
            behind = customer.get(f"/shop/orders/{later_id}", params={"min_position": later})
            # A real position the replica has not replayed yet: "not yet", never "no such position".
            assert behind.status_code == 503, behind.text
            assert behind.headers["Retry-After"] == "1"
            assert behind.json()["error"] == "unavailable"
        finally:
            standby.resume_replay()
        caught_up = customer.get(f"/shop/orders/{later_id}", params={"min_position": later})
        assert caught_up.status_code == 200, caught_up.text
        assert caught_up.json()["item_title"] == "Lagging ring"

        never = customer.get(f"/shop/orders/{later_id}", params={"min_position": later + 10_000})
        assert never.status_code in (400, 503), never.text  # a standby cannot tell the primary's head


def test_the_mes_stream_delivers_live_changes_from_the_standby(
    writer: RunningApi, reader: RunningApi, primary: str, standby: Standby
) -> None:
    with reader.client("operator", "op-replica") as operator:
        token = operator.headers["Authorization"]
    with httpx.stream(
        "GET", f"{reader.base_url}/mes/stream", headers={"Authorization": token}, timeout=30
    ) as stream:
        lines = stream.iter_lines()
        assert next(lines) == "event: ready"
        order_id, _ = _create(writer, "Streamed from a replica")
        deadline = time.monotonic() + 60
        for line in lines:
            if line.startswith("data: ") and order_id in line:
                assert '"status":"INITIATED"' in line
                break
            assert time.monotonic() < deadline, "no change event for the new order"
    wait_replayed(primary, standby)
