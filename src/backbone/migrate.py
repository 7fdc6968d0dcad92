"""Schema migrations: SQL files in migrations/ applied by yoyo, then the event store's own tables, then the
grants of each part's database role (migrations/0006_roles.sql)."""

from __future__ import annotations

from pathlib import Path

import psycopg
from yoyo import get_backend, read_migrations

from backbone.database import eventsourcing_env


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
    with backend.lock():
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    _create_event_store(dsn)
    grant_privileges(dsn)
    return [m.id for m in pending]


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
