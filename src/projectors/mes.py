"""The MES projection: the operators' order table and every stay of an order in a status."""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import msgspec
from psycopg import Cursor, sql
from psycopg.rows import DictRow

from orders_core.contracts import (
    CATALOG_TOPIC,
    EXPECTED_MANUFACTURING,
    MES_ANNOUNCED,
    MES_CHANGES_CHANNEL,
    Change,
)
from projectors import metrics
from projectors.order_rows import (
    EVENT_KINDS,
    ORDER_COLUMNS,
    OrderRow,
    expected_manufacturing,
    finish_row,
    fold_event,
    fold_order,
)
from projectors.runner import LogRow
from projectors.tables import copy_rows, mark_order_parked, upsert_rows

JSON_COLUMNS = frozenset({"quote", "status_times"})
STAY_COLUMNS = ("order_id", "status", "entered_at", "left_at")
NOTIFY_LIMIT = 7900


class MesProjector:
    """Folds order events into mes.orders, mes.status_stays and the orders per status (mes.status_counts),
    and the catalog's manufacturing estimates into mes.manufacturing_estimates and each open order's
    start_by."""

    name = "mes"

    def __init__(self, cache_size: int = 200_000) -> None:
        self._rows: dict[str, OrderRow] = {}
        self._cache_size = cache_size
        self._expected: dict[str, dict[str, timedelta]] = {}
        """Manufacturing estimates by schema, as its table holds them (read once, then kept in step)."""

    def forget(self) -> None:
        self._rows.clear()
        self._expected.clear()

    def mark_parked(
        self, cursor: Cursor[DictRow], schema: str, aggregate_id: str, reason: str | None
    ) -> None:
        """Show on the order's row that its events are parked (`reason`), or no longer are (None); tell
        the change stream, so the console marks it stale now, not at its next change."""
        mark_order_parked(cursor, schema, aggregate_id, reason)
        if schema == self.name:  # a replay into another schema announces nothing
            row = cursor.execute(
                sql.SQL("SELECT position, {} FROM {} WHERE order_id = %s").format(
                    sql.SQL(", ").join(map(sql.Identifier, MES_ANNOUNCED)), sql.Identifier(schema, "orders")
                ),
                (aggregate_id,),
            ).fetchone()
            if row is not None:
                announce(cursor, int(row["position"]), [row])

    def loader(self) -> MesLoader:
        """A fold for replays into an empty schema (the runner's `load`)."""
        return MesLoader()

    def apply(self, cursor: Cursor[DictRow], schema: str, changes: Sequence[Change]) -> None:
        expected = self._estimates(cursor, schema)
        # Estimates first: start_by is derived from the latest, whatever the order of the batch's events.
        for change in changes:
            if change.event.aggregate == "catalog":
                changed = estimates_in(change.event.name, change.event.fields)
                set_estimates(cursor, schema, expected, changed)
        orders = [c for c in changes if c.event.aggregate == "order"]
        if not orders:
            return
        rows = self._rows_for(cursor, schema, {c.aggregate_id for c in orders})
        counted = {order_id: row["status"] for order_id, row in rows.items()}  # before the batch
        touched: dict[str, OrderRow] = {}
        stays: dict[tuple[str, str, str], dict[str, Any]] = {}
        for change in orders:
            row = rows.get(change.aggregate_id)
            before = (row["status"], row["status_since"]) if row else None
            row = fold_order(
                row, change.event, change.aggregate_id, change.version, change.position, expected
            )
            rows[change.aggregate_id] = touched[change.aggregate_id] = row
            if before is not None:
                stays[(change.aggregate_id, before[1], before[0])] = _stay(change.aggregate_id, *before, row)
                if schema == self.name:  # a replay re-reads history; only live changes are observations
                    _observe_stay(before[0], before[1], row["status_since"])
            opened = _stay(change.aggregate_id, row["status"], row["status_since"], None)
            stays[(change.aggregate_id, row["status_since"], row["status"])] = opened
        upsert_rows(cursor, schema, "orders", ORDER_COLUMNS, ("order_id",), touched.values(), JSON_COLUMNS)
        upsert_rows(cursor, schema, "status_stays", STAY_COLUMNS, STAY_COLUMNS[:3], stays.values())
        # Orders per status: each order of the batch leaves the status it had before and joins its new one.
        moves: Counter[str] = Counter(row["status"] for row in touched.values())
        moves.subtract(counted.values())
        add_counts(cursor, schema, moves)
        if schema == self.name:  # a replay into a fresh schema has no listeners to tell
            announce(cursor, orders[-1].position, touched.values())
        self._remember(touched)

    def _estimates(self, cursor: Cursor[DictRow], schema: str) -> dict[str, timedelta]:
        if schema not in self._expected:
            rows = cursor.execute(
                sql.SQL("SELECT material_code, seconds FROM {}").format(
                    sql.Identifier(schema, "manufacturing_estimates")
                )
            )
            self._expected[schema] = {r["material_code"]: timedelta(seconds=r["seconds"]) for r in rows}
        return self._expected[schema]

    def _rows_for(self, cursor: Cursor[DictRow], schema: str, ids: set[str]) -> dict[str, OrderRow]:
        missing = [i for i in ids if i not in self._rows]
        found = {i: self._rows[i] for i in ids if i in self._rows}
        if missing:
            # Read back as JSON: timestamps come as ISO strings (and '-infinity' survives), as the fold
            # keeps them.
            query = sql.SQL("SELECT to_json(o) AS row FROM {} AS o WHERE order_id = ANY(%s::uuid[])").format(
                sql.Identifier(schema, "orders")
            )
            for record in cursor.execute(query, (missing,)):
                row = {c: record["row"][c] for c in ORDER_COLUMNS}
                found[row["order_id"]] = row
        return found

    def _remember(self, touched: dict[str, OrderRow]) -> None:
        if len(self._rows) + len(touched) > self._cache_size:
            self._rows.clear()
        self._rows.update(touched)


class MesLoader:
    """A replay's fold: every order row in memory, each written once, with one COPY, into empty tables.

    It reads the log's rows as stored and decodes only the order events (by topic, before any JSON is
    parsed) straight into their typed Structs. Stays are streamed to the server while the fold goes on
    (one COPY open for the whole log), so PostgreSQL stores them on the other core meanwhile.
    """

    def load(self, cursor: Cursor[DictRow], schema: str, batches: Iterable[Sequence[LogRow]]) -> None:
        """Fold the log's rows into schema's empty tables: every stay, then every order row."""
        # The rows kept hold no reference cycles, but the cyclic collector would walk all of them again
        # and again as they accumulate (half the fold's time): pause it for the load.
        collecting = gc.isenabled()
        gc.disable()
        try:
            self._load(cursor, schema, batches)
        finally:
            if collecting:
                gc.enable()

    def _load(self, cursor: Cursor[DictRow], schema: str, batches: Iterable[Sequence[LogRow]]) -> None:
        rows: dict[str, OrderRow] = {}
        expected: dict[str, timedelta] = {}
        kinds = EVENT_KINDS
        # Emptied in this transaction (they are empty: a load fills a fresh schema), so COPY may freeze.
        orders, stays_table = sql.Identifier(schema, "orders"), sql.Identifier(schema, "status_stays")
        cursor.execute(sql.SQL("TRUNCATE {}, {}").format(orders, stays_table))
        stays = sql.SQL("COPY {} ({}) FROM STDIN (FREEZE)").format(
            stays_table, sql.SQL(", ").join(map(sql.Identifier, STAY_COLUMNS))
        )
        with cursor.copy(stays) as copy:
            for batch in batches:
                lines = []
                for position, order_id, version, topic, state in batch:
                    kind = kinds.get(topic)
                    if kind is None:  # catalog events and whatever else the view does not show
                        name = topic[len(CATALOG_PREFIX) :]
                        if topic.startswith(CATALOG_PREFIX) and name in ESTIMATE_EVENTS:
                            for code, needs in estimates_in(name, msgspec.json.decode(state)).items():
                                if needs is None:
                                    expected.pop(code, None)
                                else:
                                    expected[code] = needs
                        continue
                    event = kind.decode(state)
                    row = rows.get(order_id)
                    if row is None:
                        rows[order_id] = fold_event(None, event, kind.target, order_id, version, position)
                        continue
                    status, since = row["status"], row["status_since"]
                    fold_event(row, event, kind.target, order_id, version, position)
                    # COPY text needs no escaping here: a uuid, a status name and two ISO times.
                    lines.append(f"{order_id}\t{status}\t{since}\t{row['status_since']}\n")
                if lines:
                    copy.write("".join(lines))
            # The stays still open: one per order, in its current status.
            copy.write("".join(f"{i}\t{r['status']}\t{r['status_since']}\t\\N\n" for i, r in rows.items()))
        for row in rows.values():
            finish_row(row, expected)
        copy_rows(cursor, orders, ORDER_COLUMNS, rows.values(), JSON_COLUMNS, freeze=True)
        set_estimates(cursor, schema, {}, expected, update_orders=False)
        add_counts(cursor, schema, Counter(row["status"] for row in rows.values()))


CATALOG_PREFIX = CATALOG_TOPIC + "."
ESTIMATE_EVENTS = frozenset({"CatalogSeeded", "MaterialSet"})
"""Catalog events that may set a material's manufacturing estimate; the view decodes no other."""


def estimates_in(event: str, fields: Mapping[str, Any]) -> dict[str, timedelta | None]:
    """The manufacturing estimates a catalog event sets, by material (None: the material gives none)."""
    if event == "CatalogSeeded":
        materials = fields.get("materials") or []
    elif event == "MaterialSet":
        materials = [fields["material"]]
    else:
        return {}
    return {m["code"]: expected_manufacturing(m) for m in materials}


def set_estimates(
    cursor: Cursor[DictRow],
    schema: str,
    expected: dict[str, timedelta],
    changed: Mapping[str, timedelta | None],
    update_orders: bool = True,
) -> None:
    """Record `changed` estimates in the schema's table and in `expected`; re-derive the start_by of the
    open orders of each material whose estimate moved (whole seconds, as `order_rows.start_by` adds)."""
    for code, needs in changed.items():
        if expected.get(code) == needs:
            continue
        table = sql.Identifier(schema, "manufacturing_estimates")
        if needs is None:
            expected.pop(code, None)
            cursor.execute(sql.SQL("DELETE FROM {} WHERE material_code = %s").format(table), (code,))
        else:
            expected[code] = needs
            cursor.execute(
                sql.SQL(
                    "INSERT INTO {} (material_code, seconds) VALUES (%s, %s) "
                    "ON CONFLICT (material_code) DO UPDATE SET seconds = EXCLUDED.seconds"
                ).format(table),
                (code, int(needs.total_seconds())),
            )
        if update_orders:
            seconds = int((needs or EXPECTED_MANUFACTURING).total_seconds())
            cursor.execute(
                sql.SQL(
                    "UPDATE {} SET start_by = (promised_date + 1)::timestamp AT TIME ZONE 'UTC' "
                    "- make_interval(secs => %s) WHERE material_code = %s AND promise_open"
                ).format(sql.Identifier(schema, "orders")),
                (seconds, code),
            )


def add_counts(cursor: Cursor[DictRow], schema: str, moves: Mapping[str, int]) -> None:
    """Add `moves` (orders gained or lost per status) to the schema's status_counts.

    A status no order is in has no row, as after a replay (which counts only the statuses orders are in).
    """
    changed = [(status, n) for status, n in moves.items() if n]
    if not changed:
        return
    table = sql.Identifier(schema, "status_counts")
    cursor.executemany(
        sql.SQL(
            "INSERT INTO {} AS c (status, orders) VALUES (%s, %s) "
            "ON CONFLICT (status) DO UPDATE SET orders = c.orders + EXCLUDED.orders"
        ).format(table),
        changed,
    )
    if any(n < 0 for _, n in changed):
        cursor.execute(sql.SQL("DELETE FROM {} WHERE orders = 0").format(table))


def announce(cursor: Cursor[DictRow], position: int, rows: Iterable[OrderRow]) -> None:
    """NOTIFY the changed orders with the batch; delivered to listeners when the batch commits."""
    orders = [{k: row[k] for k in MES_ANNOUNCED} for row in rows]
    payload = msgspec.json.encode({"position": position, "orders": orders, "truncated": False})
    if len(payload) > NOTIFY_LIMIT:  # PostgreSQL caps a payload at 8000 bytes: say only that much changed
        payload = msgspec.json.encode({"position": position, "orders": [], "truncated": True})
    cursor.execute("SELECT pg_notify(%s, %s)", (MES_CHANGES_CHANNEL, payload.decode()))


def _observe_stay(status: str, entered_at: str, left_at: str) -> None:
    seconds = (datetime.fromisoformat(left_at) - datetime.fromisoformat(entered_at)).total_seconds()
    metrics.STATUS_SECONDS.labels(status).observe(max(seconds, 0.0))


def _stay(order_id: str, status: str, entered_at: str, row: OrderRow | None) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "status": status,
        "entered_at": entered_at,
        "left_at": row["status_since"] if row else None,
    }
