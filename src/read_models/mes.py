"""The operators' queries over mes.orders: filters, keyset pages, and the numbers of the status board.

Each query is served by an index of the migrations: the default page by mes_orders_approved or
mes_orders_{status,material,channel}_approved and the combined ones of 0005; text search by a walk of
mes_orders_approved, which holds the text (0010), or by the trigram index mes_orders_search; stuck and
overdue pages by the partial indexes of 0009, their counts and lists by those of 0002. The board reads
orders per status from mes.status_counts and MANUFACTURING_APPROVED stays from the partial index of 0008.
bench/search.py measures every case at a million orders.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import msgspec
from psycopg import Connection, sql
from psycopg.rows import DictRow
from psycopg_pool import ConnectionPool

from orders_core.contracts import Status
from projectors.measured import LATEST_COMPLETIONS, estimate_for, measured_estimate
from read_models.paging import BadQuery, decode_cursor, encode_cursor
from read_models.urgency import urgency_of

MAX_LIMIT = 200
MAX_QUERY_LENGTH = 200


class MesOrderSort(enum.StrEnum):
    """Orders of the MES table; each is a keyset over an index. Named for the OpenAPI document and a client
    generated from it, where a bare `Sort` would not say of what."""

    APPROVED = "approved"
    """Newest approved first (the default: operators want fresh approved orders)."""
    APPROVED_OLDEST = "approved_oldest"
    """Longest waiting first."""
    CREATED = "created"
    """Newest created first."""
    URGENCY = "urgency"
    """Least slack first: the least time left before manufacturing must start to keep the promised date
    (`start_by`); orders without an open promise last."""
    DUE = "due"
    """Earliest promised date first (EDD, the order bench/dispatch.py found keeps the most promises);
    orders without an open promise last."""


SORT_KEYS: dict[MesOrderSort, tuple[str, bool]] = {
    MesOrderSort.APPROVED: ("approved_at", True),
    MesOrderSort.APPROVED_OLDEST: ("approved_at", False),
    MesOrderSort.CREATED: ("created_at", True),
    MesOrderSort.URGENCY: ("start_by", False),
    MesOrderSort.DUE: ("due_at", False),
}


class MesFilters(msgspec.Struct, frozen=True, kw_only=True):
    """What an operator filters by; every field is optional."""

    statuses: tuple[Status, ...] = ()
    material_code: str | None = None
    """One material code, or several separated by commas."""
    channel: str | None = None
    operator_id: str | None = None
    overdue: bool = False
    stuck: bool = False
    held: bool | None = None
    """True: only orders on hold; False: only orders not on hold (the queue); None: both."""
    text: str | None = None
    exclude: frozenset[UUID] = frozenset()
    """Orders left out: take-next's, those just taken or being tried, which the view may still list."""
    sort: MesOrderSort = MesOrderSort.APPROVED
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


LIST_COLUMNS = (
    "order_id", "number", "status", "channel", "owner_id", "contact_name", "item_title", "material_code",
    "quantity", "created_at", "updated_at", "status_since", "approved_at", "promised_date", "operator_id",
    "quote_total_minor", "currency", "quote_valid_until", "triangle_count", "stuck_at", "version",
    "position", "parked_since", "parked_reason", "start_by", "due_at", "held_since", "hold_reason",
)  # fmt: skip


_NULLED = {
    "approved_at": "nullif(approved_at, '-infinity') AS approved_at",
    "start_by": "nullif(start_by, 'infinity') AS start_by",
    "due_at": "nullif(due_at, 'infinity') AS due_at",
}
SELECT_LIST = ", ".join(_NULLED.get(c, c) for c in LIST_COLUMNS)
"""The listed columns; an order never approved has approved_at '-infinity' in the table, one without an
open promise start_by 'infinity': null out here."""


TEXT_WALK = 10_000
"""How many orders, in the page's order, a text search tests before it looks the word up instead."""


def find_orders(conn: Connection[DictRow], f: MesFilters) -> Page:
    """One page of mes.orders matching `f`, in `f.sort` order."""
    if not 1 <= f.limit <= MAX_LIMIT:
        raise BadQuery(f"limit must be between 1 and {MAX_LIMIT}")
    key_column, descending = SORT_KEYS[f.sort]
    where, params = _conditions(f)
    if f.cursor:
        key, order_id = decode_cursor(f.cursor, f.sort.value)
        # `(key, id) <= (k, i) AND id <> i`, not `(key, id) < (k, i)`: the same rows (ids are unique), but
        # PostgreSQL estimates a row comparison from its first column alone, and `approved_at < '-infinity'`
        # is nothing, while `<=` counts the never-approved orders. Told that a page after '-infinity' is
        # empty, the planner walked the sort index to filter a rare word instead of using the trigram index.
        op = "<=" if descending else ">="
        where.append(
            sql.SQL("({}, order_id) {} (%s::timestamptz, %s::uuid) AND order_id <> %s::uuid").format(
                sql.Identifier(key_column), sql.SQL(op)
            )
        )
        params += [key, order_id, order_id]
    order = sql.SQL("ORDER BY {key} {dir}, o.order_id {dir}").format(
        # Qualified: a bare approved_at in ORDER BY would name the select list's nullif(...) column,
        # which no index serves and which sorts never-approved orders first.
        key=sql.Identifier("o", key_column),
        dir=sql.SQL("DESC" if descending else "ASC"),
    )
    text = _pattern(f.text)
    if text is not None and _only_text(f) and key_column == "approved_at":
        rows = _text_page(conn, where, params, text, order, f.limit + 1)
    else:
        if text is not None:
            where.append(sql.SQL("search LIKE %s"))
            params.append(text)
        # The page's keys first, then its rows (a "deferred join"): choosing how to find only the keys,
        # the planner sees that an index with the filtered columns and the sort key answers from the index
        # alone, while for whole rows it may prefer walking the sort index and filtering rows it has to
        # read anyway, slow when the filter rejects the newest orders (status=CLOSED passed over 15,000).
        keys = sql.SQL("SELECT o.order_id FROM mes.orders AS o {where} {order} LIMIT %s").format(
            where=_where(where), order=order
        )
        rows = _page_rows(conn, keys, [*params, f.limit + 1], order, key_column)
    more = len(rows) > f.limit
    rows = rows[: f.limit]
    now = datetime.now(UTC)
    items = [_item(r, now) for r in rows]
    next_cursor = None
    if more and rows:
        last = rows[-1]
        next_cursor = encode_cursor(f.sort.value, last["sort_key"], str(last["order_id"]))
    return Page(items, next_cursor)


def _text_page(
    conn: Connection[DictRow],
    where: list[sql.Composable],
    params: list[Any],
    pattern: str,
    order: sql.Composable,
    n: int,
) -> list[DictRow]:
    """The first `n` orders whose text matches, for a search by text alone in an approved order.

    Which way is fast depends on how common the word is, and PostgreSQL guesses that from a sample of a
    hundred values (a name in 1% of the orders was guessed at 100 rows or 10,000 by turns, a word in 0.01%
    at 10,000 when the sample held it: each wrong guess cost 10-50 ms at a million orders, about half a
    second without the text in the index). So ask the data instead: test the next
    TEXT_WALK orders in the page's order, from mes_orders_approved, which holds the text (about 1.5 ms);
    if fewer than `n` match there, the word is rare, and its matches from the trigram index, sorted, are
    few.
    """
    walk = sql.SQL(
        "SELECT o.order_id FROM (SELECT o.order_id, o.approved_at, o.search FROM mes.orders AS o {where} "
        "{order} LIMIT %s) AS o WHERE o.search LIKE %s {order} LIMIT %s"
    ).format(where=_where(where), order=order)
    rows = _page_rows(conn, walk, [*params, TEXT_WALK, pattern, n], order, "approved_at")
    if len(rows) == n:
        return rows
    # OFFSET 0 keeps the matches a query of their own: planned apart from the ORDER BY, they come from the
    # trigram index, never from a walk of the sort index.
    matches = sql.SQL(
        "SELECT o.order_id FROM (SELECT o.order_id, o.approved_at FROM mes.orders AS o {where} OFFSET 0) "
        "AS o {order} LIMIT %s"
    ).format(where=_where([*where, sql.SQL("search LIKE %s")]), order=order)
    return _page_rows(conn, matches, [*params, pattern, n], order, "approved_at")


def _page_rows(
    conn: Connection[DictRow], keys: sql.Composable, params: list[Any], order: sql.Composable, key: str
) -> list[DictRow]:
    """The listed columns of the orders `keys` selects, in `order` (by column `key`)."""
    query = sql.SQL(
        "SELECT {columns}, stuck_at < now() AS stuck, "
        "promise_open AND promised_date < current_date AS overdue, "
        "{key}::text AS sort_key "
        "FROM mes.orders AS o WHERE o.order_id IN ({keys}) {order}"
    ).format(columns=sql.SQL(SELECT_LIST), key=sql.Identifier("o", key), keys=keys, order=order)
    return conn.execute(query, params).fetchall()


def _where(conditions: list[sql.Composable]) -> sql.Composable:
    return sql.SQL("WHERE ") + sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("")


def _only_text(f: MesFilters) -> bool:
    return not (
        f.statuses
        or f.material_code
        or f.channel
        or f.operator_id
        or f.overdue
        or f.stuck
        or f.held is not None
        or f.exclude
    )


def _pattern(text: str | None) -> str | None:
    """The LIKE pattern of a text search (BadQuery if too long), or None without one."""
    if not text:
        return None
    if len(text) > MAX_QUERY_LENGTH:
        raise BadQuery(f"q may be at most {MAX_QUERY_LENGTH} characters")
    return "%" + _escape_like(text.strip().lower()) + "%"


def _conditions(f: MesFilters) -> tuple[list[sql.Composable], list[Any]]:
    where: list[sql.Composable] = []
    params: list[Any] = []
    if len(f.statuses) == 1:
        # Not `= ANY(array)`: with a plain equality the planner sees the status-led indexes serve the
        # order (at 1M orders, status=CLOSED walked mes_orders_approved past 15,000 newer open orders).
        where.append(sql.SQL("status = %s"))
        params.append(f.statuses[0].value)
    elif f.statuses:
        where.append(sql.SQL("status = ANY(%s)"))
        params.append([s.value for s in f.statuses])
    materials = [c.strip().upper() for c in (f.material_code or "").split(",") if c.strip()]
    if len(materials) == 1:
        where.append(sql.SQL("material_code = %s"))
        params.append(materials[0])
    elif materials:  # an operator's declared materials
        where.append(sql.SQL("material_code = ANY(%s)"))
        params.append(materials)
    for column, value in (("channel", f.channel), ("operator_id", f.operator_id)):
        if value is not None:
            where.append(sql.SQL("{} = %s").format(sql.Identifier(column)))
            params.append(value)
    if f.overdue:
        where.append(sql.SQL("promise_open AND promised_date < current_date"))
    if f.stuck:
        where.append(sql.SQL("stuck_at < now()"))
    if f.held is not None:
        where.append(sql.SQL("held_since IS NOT NULL" if f.held else "held_since IS NULL"))
    if f.exclude:
        where.append(sql.SQL("NOT (order_id = ANY(%s))"))
        params.append(list(f.exclude))
    return where, params


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _item(row: DictRow, now: datetime) -> dict[str, Any]:
    item = {c: row[c] for c in LIST_COLUMNS if c not in ("stuck_at", "due_at")}
    item["order_id"] = str(row["order_id"])
    item["stuck"] = bool(row["stuck"])
    item["overdue"] = bool(row["overdue"])
    urgency = urgency_of(row["promised_date"], row["start_by"], now)
    item["slack_seconds"] = urgency.slack_seconds if urgency else None
    item["urgency"] = urgency.text if urgency else None
    return item


class OrderCounts(msgspec.Struct, frozen=True):
    """Orders per status, and how many are stuck and overdue: the board's and the gauges' numbers."""

    per_status: dict[str, int]
    stuck: int
    overdue: int


def order_counts(conn: Connection[DictRow]) -> OrderCounts:
    """The MES view's orders by status, and how many are stuck and overdue.

    Per status from mes.status_counts, which the projector keeps in the same transaction as the rows (a
    count over the table would read a million rows); stuck and overdue depend on the clock, so they are
    counted, each by a scalar subquery that reads only its own partial index.
    """
    row = conn.execute(
        "SELECT (SELECT coalesce(json_object_agg(status, orders), '{}') FROM mes.status_counts) "
        "AS per_status, "
        "(SELECT count(*) FROM mes.orders WHERE stuck_at < now()) AS stuck, "
        "(SELECT count(*) FROM mes.orders WHERE promise_open AND promised_date < current_date) AS overdue"
    ).fetchone()
    assert row is not None
    per_status = {s.value: 0 for s in Status}
    per_status.update(row["per_status"])
    return OrderCounts(per_status, row["stuck"], row["overdue"])


APPROVED_STAYS = sql.SQL("""
    SELECT order_id, entered_at, left_at, held FROM mes.status_stays
    WHERE status = 'MANUFACTURING_APPROVED' AND left_at IS NULL
    UNION ALL
    SELECT order_id, entered_at, left_at, held FROM mes.status_stays
    WHERE status = 'MANUFACTURING_APPROVED' AND left_at > {since}
""")
"""Stays in MANUFACTURING_APPROVED still open or left after `since`. Two branches, so that each is one range
of the partial index mes_status_stays_approved, read without the table (an OR would need the heap)."""


def _ceil_hour(column: str) -> sql.Composable:
    """The first full hour at or after a time column (times have microseconds: one less, truncated, +1h)."""
    return sql.SQL("date_trunc('hour', {} - interval '1 microsecond') + interval '1 hour'").format(
        sql.Identifier(column)
    )


FIRST_HOUR = sql.SQL("date_trunc('hour', now()) - interval '23 hours'")
"""The first point of the board's series of orders waiting per hour."""


def status_board(conn: Connection[DictRow], lists_limit: int = 20) -> dict[str, Any]:
    """Counts per status, waiting times in MANUFACTURING_APPROVED, and the stuck and overdue orders."""
    now = datetime.now(UTC)
    counts = order_counts(conn)
    # Per order: a hold splits its stay in MANUFACTURING_APPROVED, and the time on hold is counted apart.
    # Summed as intervals (exact), then in seconds: a float sum would depend on the order of the stays.
    per_order = sql.SQL("""
        SELECT order_id,
               date_part('epoch', sum(spent) FILTER (WHERE NOT held)) AS waiting,
               date_part('epoch', sum(spent) FILTER (WHERE held)) AS held
        FROM (SELECT order_id, held, coalesce(left_at, now()) - entered_at AS spent FROM ({stays}) AS s) AS s
        GROUP BY order_id
    """).format(stays=APPROVED_STAYS.format(since=sql.SQL("now() - interval '30 days'")))
    waits, held = (
        conn.execute(
            sql.SQL("""
            SELECT count({seconds}) AS n,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY {seconds}) AS p50,
                   percentile_cont(0.9) WITHIN GROUP (ORDER BY {seconds}) AS p90,
                   percentile_cont(0.99) WITHIN GROUP (ORDER BY {seconds}) AS p99,
                   max({seconds}) AS max
            FROM ({per_order}) AS o
            """).format(seconds=sql.Identifier(column), per_order=per_order)
        ).fetchone()
        for column in ("waiting", "held")
    )
    on_hold = {
        r["status"]: r["orders"]
        for r in conn.execute(
            "SELECT status, count(*) AS orders FROM mes.orders WHERE held_since IS NOT NULL GROUP BY status"
        )
    }
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
    held_list = conn.execute(
        listed.format(columns=columns, where=sql.SQL("held_since IS NOT NULL"), order=sql.SQL("held_since")),
        (lists_limit,),
    ).fetchall()
    approved = counts.per_status.get(Status.MANUFACTURING_APPROVED.value, 0)
    # Orders waiting (not on hold) at each of the last 24 full hours. Only stays open now or left since the
    # first of those
    # hours can have been waiting then (a few thousand): each adds one from the first hour on or after it
    # was entered and takes it away from the first hour on or after it was left; the series is the running
    # sum (one pass over the stays, not one per hour).
    series = conn.execute(
        sql.SQL("""
        WITH recent AS MATERIALIZED ({stays}),
        hours AS (SELECT generate_series({first}, date_trunc('hour', now()), interval '1 hour') AS t),
        steps AS (
            SELECT {ceil_entered} AS t, 1 AS step FROM recent WHERE NOT held
            UNION ALL
            SELECT {ceil_left}, -1 FROM recent WHERE left_at IS NOT NULL AND NOT held
        ),
        by_hour AS (SELECT greatest(t, {first}) AS t, sum(step) AS step FROM steps GROUP BY 1)
        SELECT h.t AS at, sum(coalesce(b.step, 0)) OVER (ORDER BY h.t)::bigint AS waiting
        FROM hours AS h LEFT JOIN by_hour AS b ON b.t = h.t
        UNION ALL
        SELECT now(), %s::bigint
        ORDER BY at
        """).format(
            stays=APPROVED_STAYS.format(since=FIRST_HOUR),
            first=FIRST_HOUR,
            ceil_entered=_ceil_hour("entered_at"),
            ceil_left=_ceil_hour("left_at"),
        ),
        (approved - on_hold.get(Status.MANUFACTURING_APPROVED.value, 0),),
    ).fetchall()
    return {
        "counts": counts.per_status,
        "on_hold": on_hold,
        "approved_waiting_series": [dict(r) for r in series],
        "approved_wait_seconds": dict(waits) if waits else {},
        "approved_held_seconds": dict(held) if held else {},
        "stuck_total": counts.stuck,
        "overdue_total": counts.overdue,
        "stuck": [_item(r, now) for r in stuck],
        "overdue": [_item(r, now) for r in overdue],
        "held": [_item(r, now) for r in held_list],
    }


def preview_of(conn: Connection[DictRow], order_id: UUID) -> tuple[str, str | None] | None:
    """The order's status and its preview's sha256 (None: no preview yet), or None for no such order."""
    row = conn.execute(
        "SELECT status, preview_sha256 FROM mes.orders WHERE order_id = %s", (order_id,)
    ).fetchone()
    return (row["status"], row["preview_sha256"]) if row else None


class ApprovedQueue:
    """The approved orders not on hold, earliest promised first, as take-next reads its candidates (the
    command API's `orders_core.api.take_next.Queue`)."""

    def __init__(self, pool: ConnectionPool[Connection[DictRow]]) -> None:
        self.pool = pool

    def page(
        self, materials: tuple[str, ...] | None, exclude: frozenset[UUID], limit: int
    ) -> tuple[list[UUID], int]:
        """Ids of the first `limit` orders of `materials` (None: every material), `exclude` left out, and
        the view's position: the page reflects every event up to it."""
        filters = MesFilters(
            statuses=(Status.MANUFACTURING_APPROVED,),
            held=False,
            material_code=None if materials is None else ",".join(materials),
            exclude=exclude,
            sort=MesOrderSort.DUE,
            limit=limit,
        )
        with self.pool.connection() as conn:
            # The position first: the page, read after it, reflects at least every event up to it.
            row = conn.execute(
                "SELECT notification_id FROM mes.tracking WHERE application_name = 'orders'"
            ).fetchone()
            found = find_orders(conn, filters) if materials != () else None
        ids = [UUID(str(i["order_id"])) for i in found.items] if found else []
        return ids, int(row["notification_id"]) if row else 0


MANUFACTURING_ESTIMATES = sql.SQL("""
    SELECT m.material_code, e.seconds, e.source, coalesce(c.completions, 0) AS completions,
           ARRAY(SELECT l.seconds FROM mes.manufacturing_completions AS l
                  WHERE l.material_code = m.material_code
                  ORDER BY l.finished_at DESC, l.order_id LIMIT %s) AS latest
      FROM (SELECT code AS material_code FROM shop.materials
            UNION SELECT material_code FROM mes.manufacturing_estimates
            UNION SELECT material_code FROM mes.manufacturing_completion_counts) AS m
      LEFT JOIN mes.manufacturing_estimates AS e USING (material_code)
      LEFT JOIN mes.manufacturing_completion_counts AS c USING (material_code)
     ORDER BY m.material_code
""")
"""Every material the catalog knows (the shop's view of it) or the MES measured, with the estimate in use,
its count of completions (kept by the projection) and the latest of them (by
mes_manufacturing_completions_latest)."""


def manufacturing_estimates(conn: Connection[DictRow]) -> list[dict[str, Any]]:
    """Each material's manufacturing estimate in use, in hours and seconds, and where it comes from (a
    material without a row in mes.manufacturing_estimates takes the default); how many completions the
    MES recorded, and their measured estimate in hours (None below enough of them), by the projection's
    own rule (projectors/measured.py)."""
    found = []
    for row in conn.execute(MANUFACTURING_ESTIMATES, (LATEST_COMPLETIONS,)):
        measured = measured_estimate(row["latest"])
        if row["seconds"] is None:
            needs, source = estimate_for(None, None)
        else:
            needs, source = timedelta(seconds=row["seconds"]), row["source"]
        found.append(
            {
                "material_code": row["material_code"],
                "hours": needs / HOUR,
                "seconds": int(needs.total_seconds()),
                "source": source,
                "completions": row["completions"],
                "measured_hours": None if measured is None else measured / HOUR,
            }
        )
    return found


HOUR = timedelta(hours=1)
