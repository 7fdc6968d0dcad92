"""Schema migrations: SQL files in migrations/ applied by yoyo, then the event store's own tables, then the
grants of each part's database role (migrations/0006_roles.sql)."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import structlog
from yoyo import get_backend, read_migrations
from yoyo.exceptions import LockTimeout

from backbone.database import eventsourcing_env

log = structlog.get_logger("migrate")


def migrations_dir() -> Path:
    """The SQL migrations: packaged beside this module in a wheel, at the repository root in a checkout."""
    packaged = Path(__file__).with_name("migrations")
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "migrations"


def yoyo_uri(dsn: str) -> str:
    """yoyo's URI for the psycopg 3 backend."""
    scheme, sep, rest = dsn.partition("://")
    if not sep or scheme not in ("postgres", "postgresql"):
        raise ValueError("DATABASE_URL must be a postgresql:// URL")
    return f"postgresql+psycopg://{rest}"


def migrate(dsn: str) -> list[str]:
    """Apply pending migrations; returns the ids applied now (none on an up-to-date database)."""
    backend = get_backend(yoyo_uri(dsn))
    migrations = read_migrations(str(migrations_dir()))
    # Under yoyo's lock to the end, event store and grants included: a process that waits for the
    # migrations (wait_until_migrated) sees them done only once all of it is.
    with backend.lock():
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
        _create_event_store(dsn)
        grant_privileges(dsn)
    return [m.id for m in pending]


def wait_until_migrated(dsn: str, seconds: float, every: float = 2.0) -> None:
    """Return once every migration is applied and no `migrate` is under way (none holds yoyo's lock); raise
    TimeoutError after `seconds`. Applies nothing: the parts on Kubernetes wait so for the migrate Job."""
    deadline = time.monotonic() + seconds
    migrations = read_migrations(str(migrations_dir()))
    while True:
        try:
            backend = get_backend(yoyo_uri(dsn))
            try:
                with backend.lock(timeout=every):
                    pending = [m.id for m in backend.to_apply(migrations)]
            finally:
                backend.connection.close()
            if not pending:
                return
            log.info("waiting for migrations", pending=pending)
        except (psycopg.Error, LockTimeout, OSError) as e:  # not up yet, or a migration under way
            log.info("waiting for the database to be migrated", reason=repr(e))
        if time.monotonic() >= deadline:
            raise TimeoutError(f"the database was not migrated within {seconds:g} s")
        time.sleep(every)


def grant_privileges(dsn: str) -> None:
    """Give each part's role its privileges on every table there is now, the event store's included."""
    with psycopg.connect(dsn) as conn:
        conn.execute("SELECT backbone.grant_privileges()")


def _create_event_store(dsn: str) -> None:
    from orders_core.application import OrdersApplication

    app = OrdersApplication(env=eventsourcing_env(dsn, pool_size=1, create_table=True))
    try:
        app.seed_catalog()
    finally:
        app.close()
