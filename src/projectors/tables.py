"""Writing many rows at once: COPY into a temporary staging table, then one upsert into the view table."""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec
from psycopg import Cursor, sql
from psycopg.rows import DictRow


def upsert_rows(
    cursor: Cursor[DictRow],
    schema: str,
    table: str,
    columns: Sequence[str],
    key: Sequence[str],
    rows: Iterable[dict[str, Any]],
    json_columns: frozenset[str] = frozenset(),
) -> None:
    """Insert `rows` into schema.table, replacing rows with the same `key` (COPY is the fast path in).

    Of rows with the same key the last wins, and the staging table is left empty again: a batch may
    change one row several times and call this once per change (PostgreSQL refuses an upsert that
    touches a row twice, and a staging table still holding an earlier call's rows would make it do so).
    """
    stage = sql.Identifier(f"stage_{schema}_{table}")
    pick = operator.itemgetter(*key)
    unique = {pick(row): row for row in rows}
    target = sql.Identifier(schema, table)
    names = sql.SQL(", ").join(map(sql.Identifier, columns))
    cursor.execute(
        sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {}) ON COMMIT DELETE ROWS").format(stage, target)
    )
    copy_rows(cursor, stage, columns, unique.values(), json_columns)
    updates = sql.SQL(", ").join(
        sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in columns if c not in key
    )
    cursor.execute(
        sql.SQL(
            "INSERT INTO {target} ({names}) SELECT {names} FROM {stage} "
            "ON CONFLICT ({key}) DO UPDATE SET {updates}"
        ).format(
            target=target,
            names=names,
            stage=stage,
            key=sql.SQL(", ").join(map(sql.Identifier, key)),
            updates=updates,
        )
    )
    cursor.execute(sql.SQL("DELETE FROM {}").format(stage))


def copy_rows(
    cursor: Cursor[DictRow],
    table: sql.Identifier,
    columns: Sequence[str],
    rows: Iterable[dict[str, Any]],
    json_columns: frozenset[str] = frozenset(),
    freeze: bool = False,
) -> None:
    """COPY `rows` (dicts with at least `columns`) into `table` as they are: no conflicts expected.

    `freeze`: write the rows frozen (the table must be new or truncated in this transaction), so that
    neither the index builds nor a later vacuum have to visit them again to mark them visible.
    """
    names = sql.SQL(", ").join(map(sql.Identifier, columns))
    plain = operator.itemgetter(*columns)
    json_at = [i for i, c in enumerate(columns) if c in json_columns]
    encode = msgspec.json.encode
    freezing = sql.SQL(" (FREEZE)" if freeze else "")
    with cursor.copy(sql.SQL("COPY {} ({}) FROM STDIN{}").format(table, names, freezing)) as copy:
        for row in rows:
            values = list(plain(row))
            for i in json_at:
                if values[i] is not None:
                    # COPY's text format takes JSON as text: no Jsonb wrapper and dumper per value, and
                    # msgspec encodes several times faster than the standard library.
                    values[i] = encode(values[i]).decode()
            copy.write_row(values)


def mark_order_parked(cursor: Cursor[DictRow], schema: str, order_id: str, reason: str | None) -> None:
    """Say on the order's row since when and why it is stale (`reason` None: it is not, any more).

    An aggregate without a row (the catalog, or an order whose first event was parked) changes nothing.
    """
    cursor.execute(
        sql.SQL(
            "UPDATE {} SET parked_since = CASE WHEN %(reason)s::text IS NULL THEN NULL "
            "ELSE coalesce(parked_since, now()) END, parked_reason = %(reason)s WHERE order_id = %(id)s"
        ).format(sql.Identifier(schema, "orders")),
        {"reason": reason, "id": order_id},
    )
