"""Rebuilding a projection from the whole event store into fresh tables, then swapping them in at once.

Operators keep reading the old view while the new one is built in schema `<name>_next` (tables copied
`LIKE` the migrated ones, so their indexes come along). The swap renames the schemas in one transaction,
taken under a lock on the live tracking table so no batch of the live runner commits in between; view and
tracking live in one schema and so are always replaced, or dropped, together. The new schema and its
tables get the live ones' grants, so the read API and the projector keep their privileges across the swap.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from psycopg import sql

from projectors.runner import ProjectorRunner


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
            copy_grants(conn, name, fresh)
            conn.execute(
                sql.SQL("INSERT INTO {} SELECT * FROM {} WHERE application_name = '__migration__'").format(
                    sql.Identifier(fresh, "tracking"), sql.Identifier(name, "tracking")
                )
            )
    return fresh


def copy_grants(conn: psycopg.Connection[Any], source: str, target: str) -> None:
    """Grant on schema `target` and its tables what is granted on schema `source` and its tables of the same
    names, default privileges included (CREATE TABLE ... LIKE copies none of them)."""
    on_schema = conn.execute(
        "SELECT CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END, a.privilege_type, "
        "a.is_grantable FROM pg_namespace o, aclexplode(o.nspacl) a "
        "WHERE o.nspname = %s AND a.grantee <> o.nspowner",
        (source,),
    ).fetchall()
    for grantee, privilege, grantable in on_schema:
        _grant(conn, sql.SQL("SCHEMA {}").format(sql.Identifier(target)), privilege, grantee, grantable)
    on_tables = conn.execute(
        "SELECT o.relname, CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END, "
        "a.privilege_type, a.is_grantable "
        "FROM pg_class o JOIN pg_namespace n ON n.oid = o.relnamespace, aclexplode(o.relacl) a "
        "WHERE n.nspname = %s AND a.grantee <> o.relowner "
        "AND o.relname IN (SELECT tablename FROM pg_tables WHERE schemaname = %s)",
        (source, target),
    ).fetchall()
    for table, grantee, privilege, grantable in on_tables:
        _grant(conn, sql.SQL("TABLE {}").format(sql.Identifier(target, table)), privilege, grantee, grantable)
    defaults = conn.execute(
        "SELECT pg_get_userbyid(d.defaclrole), d.defaclobjtype, "
        "CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END, a.privilege_type, "
        "a.is_grantable FROM pg_default_acl d, aclexplode(d.defaclacl) a "
        "WHERE d.defaclnamespace = (SELECT oid FROM pg_namespace WHERE nspname = %s)",
        (source,),
    ).fetchall()
    for owner, kind, grantee, privilege, grantable in defaults:
        kinds = sql.SQL(_DEFAULT_KINDS[kind])
        _grant(conn, kinds, privilege, grantee, grantable, defaults_of=(owner, target))


_DEFAULT_KINDS = {"r": "TABLES", "S": "SEQUENCES", "f": "FUNCTIONS", "T": "TYPES"}
"""pg_default_acl's object types, as ALTER DEFAULT PRIVILEGES names them."""


def _grant(
    conn: psycopg.Connection[Any],
    what: sql.Composable,
    privilege: str,
    grantee: str | None,
    grantable: bool,
    defaults_of: tuple[str, str] | None = None,
) -> None:
    """GRANT `privilege` ON `what` to `grantee` (None: PUBLIC); with `defaults_of` (role, schema), as the
    default privileges of what that role creates in that schema."""
    statement = sql.SQL("GRANT {} ON {} TO {}{}").format(
        sql.SQL(privilege),  # a keyword read from the catalog (aclexplode), not input
        what,
        sql.SQL("PUBLIC") if grantee is None else sql.Identifier(grantee),
        sql.SQL(" WITH GRANT OPTION" if grantable else ""),
    )
    if defaults_of is not None:
        role, schema = defaults_of
        prefix = sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} ")
        statement = prefix.format(sql.Identifier(role), sql.Identifier(schema)) + statement
    conn.execute(statement)


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


def _analyses(
    conn: psycopg.Connection[Any], table: sql.Identifier, targeted: list[str]
) -> list[sql.Composed]:
    """ANALYZE statements for a table: one per column with a statistics target of its own, one for the rest.

    ANALYZE samples rows for the largest target of the columns it is given and computes every column's
    statistics over that sample: apart, a larger target costs its own column's statistics only.
    """
    if not targeted:
        return [sql.SQL("ANALYZE {}").format(table)]
    columns = [
        str(r[0])
        for r in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
            "AND NOT attisdropped ORDER BY attnum",
            (table.as_string(conn),),
        )
        if str(r[0]) not in targeted
    ]
    analyses = [sql.SQL("ANALYZE {} ({})").format(table, sql.Identifier(c)) for c in targeted]
    if columns:
        analyses.append(
            sql.SQL("ANALYZE {} ({})").format(table, sql.SQL(", ").join(map(sql.Identifier, columns)))
        )
    return analyses


def _statistics_targets(conn: psycopg.Connection[Any], schema: str, table: str) -> list[tuple[str, int]]:
    """(column, target) of a table's columns with a statistics target of their own."""
    rows = conn.execute(
        "SELECT attname, attstattarget FROM pg_attribute "
        "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped AND attstattarget >= 0",
        (f"{schema}.{table}",),
    ).fetchall()
    return [(str(r[0]), int(r[1])) for r in rows]


def build_indexes(dsn: str, name: str, workers: int = 2) -> None:
    """Give every table of `<name>_next` the secondary indexes (and column statistics targets) its live
    twin in `name` has, then ANALYZE them.

    Each CREATE INDEX and ANALYZE is one backend's work on one core: `workers` connections run them side
    by side, the costliest first (trigram index, then ANALYZE), so the whole takes about as long as its
    largest part.
    """
    fresh = f"{name}_next"
    analyses: list[sql.Composed] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        tables = [
            r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (fresh,))
        ]
        definitions = [
            definition.replace(f" ON {name}.", f" ON {fresh}.", 1)
            for table in tables
            for definition in _index_definitions(conn, name, table)
        ]
        for table in tables:
            targets = _statistics_targets(conn, name, table)
            # CREATE TABLE ... LIKE does not copy the statistics targets of columns.
            for column, target in targets:
                conn.execute(
                    sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET STATISTICS {}").format(
                        sql.Identifier(fresh, table), sql.Identifier(column), sql.Literal(target)
                    )
                )
            analyses += _analyses(conn, sql.Identifier(fresh, table), [c for c, _ in targets])
    others = [sql.SQL(d) for d in definitions if " USING btree " not in d]  # trigram: the slowest to build
    btrees = [sql.SQL(d) for d in definitions if " USING btree " in d]
    statements: list[sql.SQL | sql.Composed] = [*others, *analyses, *btrees]
    todo = iter(statements)
    lock = threading.Lock()

    def work() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            # Sorts and trigram lists stay in memory instead of spilling to temporary files; no parallel
            # workers per index, as the indexes are already built side by side.
            conn.execute("SET maintenance_work_mem = '256MB'")
            conn.execute("SET max_parallel_maintenance_workers = 0")
            while True:
                with lock:
                    statement = next(todo, None)
                if statement is None:
                    return
                conn.execute(statement)

    with ThreadPoolExecutor(workers) as pool:
        for done in [pool.submit(work) for _ in range(workers)]:
            done.result()


def swap_in(dsn: str, name: str, runner: ProjectorRunner) -> int:
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
    dsn: str, name: str, runner_for: Callable[[str], ProjectorRunner], progress: Callable[[int, int], None]
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
