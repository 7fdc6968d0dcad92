"""Rebuilding a projection from the whole event store into fresh tables, then swapping them in at once.

Operators keep reading the old view while the new one is built in schema `<name>_next` (tables copied
`LIKE` the migrated ones, so their indexes come along). The swap renames the schemas in one transaction,
taken under a lock on the live tracking table so no batch of the live runner commits in between; view and
tracking live in one schema and so are always replaced, or dropped, together.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from projectors.runner import ProjectionRunner


def prepare_schema(dsn: str, name: str) -> str:
    """Create `<name>_next` with empty copies of every table of schema `name`; returns its name."""
    fresh = f"{name}_next"
    with psycopg.connect(dsn, autocommit=True) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = %s AND table_type = 'BASE TABLE'",
                (name,),
            )
        ]
        with conn.transaction():
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(fresh)))
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(fresh)))
            for table in tables:
                # Without secondary indexes: a bulk load that maintains eleven indexes (one of them
                # trigram) row by row is many times slower than building them once at the end.
                conn.execute(
                    sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL EXCLUDING INDEXES)").format(
                        sql.Identifier(fresh, table), sql.Identifier(name, table)
                    )
                )
                for constraint, definition in _primary_keys(conn, name, table):
                    conn.execute(
                        sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                            sql.Identifier(fresh, table), sql.Identifier(constraint), sql.SQL(definition)
                        )
                    )
            conn.execute(
                sql.SQL("INSERT INTO {} SELECT * FROM {} WHERE application_name = '__migration__'").format(
                    sql.Identifier(fresh, "tracking"), sql.Identifier(name, "tracking")
                )
            )
    return fresh


def _primary_keys(conn: psycopg.Connection[Any], schema: str, table: str) -> list[tuple[str, str]]:
    """(name, definition) of a table's primary key constraint: upserts need it during the load."""
    rows = conn.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = %s::regclass AND contype = 'p'",
        (f"{schema}.{table}",),
    ).fetchall()
    return [(str(r[0]), str(r[1])) for r in rows]


def _index_definitions(conn: psycopg.Connection[Any], schema: str, table: str) -> list[str]:
    """CREATE INDEX statements of a table's indexes other than its primary key."""
    rows = conn.execute(
        "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s AND NOT i.indisprimary",
        (schema, table),
    ).fetchall()
    return [str(r[0]) for r in rows]


def build_indexes(dsn: str, name: str) -> None:
    """Give every table of `<name>_next` the secondary indexes its live twin in `name` has."""
    fresh = f"{name}_next"
    with psycopg.connect(dsn, autocommit=True) as conn:
        tables = [
            r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (fresh,))
        ]
        for table in tables:
            for definition in _index_definitions(conn, name, table):
                conn.execute(definition.replace(f" ON {name}.", f" ON {fresh}.", 1))
            conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(fresh, table)))


def swap_in(dsn: str, name: str, runner: ProjectionRunner) -> int:
    """Catch `runner` (writing `<name>_next`) up and make its schema the live `name`; returns its position."""
    fresh, old = f"{name}_next", f"{name}_old"
    with psycopg.connect(dsn) as conn:
        with conn.transaction():
            # The live runner writes tracking last in each batch: holding this lock, no live batch commits
            # until the swap has, and the new view is caught up to everything already stored.
            conn.execute(
                sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(name, "tracking"))
            )
            position = runner.catch_up()
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(old)))
            conn.execute(
                sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(sql.Identifier(name), sql.Identifier(old))
            )
            conn.execute(
                sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(sql.Identifier(fresh), sql.Identifier(name))
            )
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(old)))
        conn.commit()
    return position


def replay(
    dsn: str, name: str, runner_for: Callable[[str], ProjectionRunner], progress: Callable[[int, int], None]
) -> int:
    """Rebuild projection `name` from the first event and swap it in; returns the position reached."""
    fresh = prepare_schema(dsn, name)
    runner = runner_for(fresh)
    runner.on_batch = progress
    if hasattr(runner.projection, "loader"):
        runner.load()
    else:
        runner.catch_up()
    build_indexes(dsn, name)
    return swap_in(dsn, name, runner)
