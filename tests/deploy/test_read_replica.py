"""READ_REPLICA_URL, as deploy/kubernetes sets it for the read API (CloudNativePG's read-only service): the
queries go there, the live MES feed keeps LISTENing on the primary (a hot standby cannot LISTEN)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import psycopg
import pytest

from backbone.migrate import migrate
from tests.conftest import (
    JWT_SECRET,
    PostgresServer,
    free_port,
    start_process,
    stop_process,
    wait_for_health,
)


def sessions(url: str) -> list[str]:
    """What every other session on `url`'s database last ran."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT query FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return [str(row[0]) for row in rows]


@pytest.fixture
def databases(postgres: PostgresServer) -> Iterator[tuple[str, str]]:
    primary, replica = postgres.create_database("primary"), postgres.create_database("replica")
    migrate(primary)
    migrate(replica)
    yield primary, replica


def test_the_read_api_queries_the_replica_and_listens_on_the_primary(
    databases: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    primary, replica = databases
    env = {
        "DATABASE_URL": primary,
        "READ_REPLICA_URL": replica,
        "BACKBONE_HOME": str(tmp_path_factory.mktemp("replica-home")),
        "JWT_SECRET": JWT_SECRET,
    }
    port = free_port()
    process = start_process(["read-api"], env, port)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_health(base, process)
        assert httpx.get(f"{base}/health/ready", timeout=5).status_code == 200
        deadline = time.monotonic() + 20
        while not any(q.startswith("LISTEN") for q in sessions(primary)):
            assert time.monotonic() < deadline, "the change feed never listened on the primary"
            time.sleep(0.1)
        assert all(q.startswith("LISTEN") for q in sessions(primary)), sessions(primary)
        on_replica = sessions(replica)
        assert on_replica and not any(q.startswith("LISTEN") for q in on_replica)
    finally:
        stop_process(process)
