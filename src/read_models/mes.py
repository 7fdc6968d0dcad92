"""The operators' queries over mes.orders: filters, keyset pages, and the numbers of the status board.

Each query is served by an index of migrations/0002_read_models.sql: the default page by
mes_orders_approved or mes_orders_{status,material,channel}_approved, text search by the trigram index
mes_orders_search, stuck and overdue by their partial indexes.
"""

from __future__ import annotations

import base64
import binascii
import enum
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
from psycopg import Connection, sql
from psycopg.rows import DictRow

from orders_core.contracts import Status

MAX_LIMIT = 200
MAX_QUERY_LENGTH = 200


class Sort(enum.StrEnum):
    """Orders of the MES table; each is a keyset over an index."""

    APPROVED = "approved"
    """Newest approved first (the default: operators want fresh approved orders)."""
    APPROVED_OLDEST = "approved_oldest"
    """Longest waiting first."""
    CREATED = "created"
    """Newest created first."""


SORT_KEYS: dict[Sort, tuple[str, bool]] = {
    Sort.APPROVED: ("approved_at", True),
    Sort.APPROVED_OLDEST: ("approved_at", False),
    Sort.CREATED: ("created_at", True),
}


class BadQuery(ValueError):
    """A filter, cursor or limit that cannot be served; the message says which and why."""


class MesFilters(msgspec.Struct, frozen=True, kw_only=True):
    """What an operator filters by; every field is optional."""

    statuses: tuple[Status, ...] = ()
    material: str | None = None
    channel: str | None = None
    operator: str | None = None
    overdue: bool = False
    stuck: bool = False
    text: str | None = None
    sort: Sort = Sort.APPROVED
    cursor: str | None = None
    limit: int = 50


class Page(msgspec.Struct):
    """One page of orders and the cursor of the next (None on the last page)."""

    items: list[dict[str, Any]]
    next_cursor: str | None


def parse_statuses(raw: str | None) -> tuple[Status, ...]:
    """`status=A,B` as Status values; BadQuery names an unknown one."""
    if not raw:
        return ()
    found = []
    for part in raw.split(","):
        try:
            found.append(Status(part.strip().upper()))
        except ValueError:
            raise BadQuery(f"unknown status {part.strip()!r}; known: {', '.join(Status)}") from None
    return tuple(found)


def encode_cursor(sort: Sort, key: str, order_id: str) -> str:
    """An opaque cursor for the row after which the next page starts."""
    return base64.urlsafe_b64encode(msgspec.json.encode([sort.value, key, order_id])).decode().rstrip("=")


def decode_cursor(cursor: str, sort: Sort) -> tuple[str, str]:
    """The (sort key, order id) a cursor points after; BadQuery if it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        sort_name, key, order_id = msgspec.json.decode(raw, type=tuple[str, str, str])
        UUID(order_id)
        if key != "-infinity":
            datetime.fromisoformat(key)
    except (binascii.Error, msgspec.DecodeError, ValueError) as e:
        raise BadQuery("malformed cursor: pass back the next_cursor of a previous page") from e
    if sort_name != sort.value:
        raise BadQuery(f"this cursor belongs to sort={sort_name}, not sort={sort.value}")
    return key, order_id


LIST_COLUMNS = (
    "order_id", "number", "status", "channel", "owner_id", "contact_name", "item_title", "material_code",
    "quantity", "created_at", "updated_at", "status_since", "approved_at", "promised_date", "operator_id",
    "quote_total_minor", "currency", "triangle_count", "stuck_at", "version", "position",
)  # fmt: skip


SELECT_LIST = ", ".join(
    "nullif(approved_at, '-infinity') AS approved_at" if c == "approved_at" else c for c in LIST_COLUMNS
)
"""The listed columns; an order never approved has approved_at '-infinity' in the table, null out here."""


def find_orders(conn: Connection[DictRow], f: MesFilters) -> Page:
    """One page of mes.orders matching `f`, in `f.sort` order."""
    if not 1 <= f.limit <= MAX_LIMIT:
        raise BadQuery(f"limit must be between 1 and {MAX_LIMIT}")
    key_column, descending = SORT_KEYS[f.sort]
    where, params = _conditions(f)
    if f.cursor:
        key, order_id = decode_cursor(f.cursor, f.sort)
        op = "<" if descending else ">"
        where.append(
            sql.SQL("({}, order_id) {} (%s::timestamptz, %s::uuid)").format(
                sql.Identifier(key_column), sql.SQL(op)
            )
        )
        params += [key, order_id]
    direction = sql.SQL("DESC" if descending else "ASC")
    query = sql.SQL(
        "SELECT {columns}, stuck_at < now() AS stuck, "
        "promise_open AND promised_date < current_date AS overdue, "
        "{key}::text AS sort_key "
        "FROM mes.orders AS o {where} ORDER BY {key} {dir}, o.order_id {dir} LIMIT %s"
    ).format(
        columns=sql.SQL(SELECT_LIST),
        # Qualified: a bare approved_at in ORDER BY would name the select list's nullif(...) column,
        # which no index serves and which sorts never-approved orders first.
        key=sql.Identifier("o", key_column),
        where=sql.SQL("WHERE ") + sql.SQL(" AND ").join(where) if where else sql.SQL(""),
        dir=direction,
    )
    rows = conn.execute(query, [*params, f.limit + 1]).fetchall()
    more = len(rows) > f.limit
    rows = rows[: f.limit]
    items = [_item(r) for r in rows]
    next_cursor = None
    if more and rows:
        last = rows[-1]
        next_cursor = encode_cursor(f.sort, last["sort_key"], str(last["order_id"]))
    return Page(items, next_cursor)


def _conditions(f: MesFilters) -> tuple[list[sql.Composable], list[Any]]:
    where: list[sql.Composable] = []
    params: list[Any] = []
    if f.statuses:
        where.append(sql.SQL("status = ANY(%s)"))
        params.append([s.value for s in f.statuses])
    for column, value in (("material_code", f.material), ("channel", f.channel), ("operator_id", f.operator)):
        if value is not None:
            where.append(sql.SQL("{} = %s").format(sql.Identifier(column)))
            params.append(value.upper() if column == "material_code" else value)
    if f.overdue:
        where.append(sql.SQL("promise_open AND promised_date < current_date"))
    if f.stuck:
        where.append(sql.SQL("stuck_at < now()"))
    if f.text:
        if len(f.text) > MAX_QUERY_LENGTH:
            raise BadQuery(f"q may be at most {MAX_QUERY_LENGTH} characters")
        where.append(sql.SQL("search LIKE %s"))
        params.append("%" + _escape_like(f.text.strip().lower()) + "%")
    return where, params


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _item(row: DictRow) -> dict[str, Any]:
    item = {c: row[c] for c in LIST_COLUMNS if c != "stuck_at"}
    item["order_id"] = str(row["order_id"])
    item["stuck"] = bool(row["stuck"])
    item["overdue"] = bool(row["overdue"])
    return item


class OrderCounts(msgspec.Struct, frozen=True):
    """Orders per status, and how many are stuck and overdue: the board's and the gauges' numbers."""

    per_status: dict[str, int]
    stuck: int
    overdue: int


def order_counts(conn: Connection[DictRow]) -> OrderCounts:
    """Count the MES view's orders by status, stuck and overdue."""
    per_status = {s.value: 0 for s in Status}
    for row in conn.execute("SELECT status, count(*) AS n FROM mes.orders GROUP BY status"):
        per_status[row["status"]] = row["n"]
    # Two scalar subqueries, so each count reads only its own partial index (one FILTERed scan reads all).
    totals = conn.execute(
        "SELECT (SELECT count(*) FROM mes.orders WHERE stuck_at < now()) AS stuck, "
        "(SELECT count(*) FROM mes.orders WHERE promise_open AND promised_date < current_date) AS overdue"
    ).fetchone()
    assert totals is not None
    return OrderCounts(per_status, totals["stuck"], totals["overdue"])


def status_board(conn: Connection[DictRow], lists_limit: int = 20) -> dict[str, Any]:
    """Counts per status, waiting times in MANUFACTURING_APPROVED, and the stuck and overdue orders."""
    counts = order_counts(conn)
    waits = conn.execute(
        """
        SELECT count(*) AS n,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) AS p50,
               percentile_cont(0.9) WITHIN GROUP (ORDER BY seconds) AS p90,
               percentile_cont(0.99) WITHIN GROUP (ORDER BY seconds) AS p99,
               max(seconds) AS max
        FROM (SELECT extract(epoch FROM coalesce(left_at, now()) - entered_at) AS seconds
              FROM mes.status_stays
              WHERE status = 'MANUFACTURING_APPROVED'
                AND (left_at IS NULL OR left_at > now() - interval '30 days')) AS stays
        """
    ).fetchone()
    listed = sql.SQL(
        "SELECT {columns}, stuck_at < now() AS stuck, "
        "promise_open AND promised_date < current_date AS overdue "
        "FROM mes.orders WHERE {where} ORDER BY {order} LIMIT %s"
    )
    columns = sql.SQL(SELECT_LIST)
    stuck = conn.execute(
        listed.format(columns=columns, where=sql.SQL("stuck_at < now()"), order=sql.SQL("stuck_at")),
        (lists_limit,),
    ).fetchall()
    overdue = conn.execute(
        listed.format(
            columns=columns,
            where=sql.SQL("promise_open AND promised_date < current_date"),
            order=sql.SQL("promised_date"),
        ),
        (lists_limit,),
    ).fetchall()

    series = conn.execute(
        """
        SELECT t AS at,
               (SELECT count(*) FROM mes.status_stays s
                WHERE s.status = 'MANUFACTURING_APPROVED' AND s.entered_at <= t
                  AND (s.left_at IS NULL OR s.left_at > t)) AS waiting
        FROM generate_series(date_trunc('hour', now()) - interval '23 hours', date_trunc('hour', now()),
                             interval '1 hour') AS t
        UNION ALL
        SELECT now(), count(*) FROM mes.orders WHERE status = 'MANUFACTURING_APPROVED'
        ORDER BY at
        """
    ).fetchall()
    return {
        "counts": counts.per_status,
        "approved_waiting_series": [dict(r) for r in series],
        "approved_wait_seconds": dict(waits) if waits else {},
        "stuck_total": counts.stuck,
        "overdue_total": counts.overdue,
        "stuck": [_item(r) for r in stuck],
        "overdue": [_item(r) for r in overdue],
    }
