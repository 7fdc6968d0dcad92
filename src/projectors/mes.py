"""The MES projection: the operators' order table and every stay of an order in a status."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import msgspec
from psycopg import Cursor, sql
from psycopg.rows import DictRow

from orders_core.contracts import MES_CHANGES_CHANNEL, Change
from projectors import metrics
from projectors.order_rows import ORDER_COLUMNS, OrderRow, fold_order
from projectors.tables import copy_rows, upsert_rows

JSON_COLUMNS = frozenset({"quote", "status_times"})
STAY_COLUMNS = ("order_id", "status", "entered_at", "left_at")
ANNOUNCED = ("order_id", "number", "status", "operator_id", "version")
NOTIFY_LIMIT = 7900


class MesProjection:
    """Folds order events into mes.orders and mes.status_stays."""

    name = "mes"

    def __init__(self, cache_size: int = 200_000) -> None:
        self._rows: dict[str, OrderRow] = {}
        self._cache_size = cache_size

    def forget(self) -> None:
        self._rows.clear()

    def loader(self) -> MesLoader:
        """A fold for replays into an empty schema (the runner's `load`)."""
        return MesLoader()

    def apply(self, cursor: Cursor[DictRow], schema: str, changes: Sequence[Change]) -> None:
        orders = [c for c in changes if c.event.aggregate == "order"]
        if not orders:
            return
        rows = self._rows_for(cursor, schema, {c.aggregate_id for c in orders})
        touched: dict[str, OrderRow] = {}
        stays: dict[tuple[str, str, str], dict[str, Any]] = {}
        for change in orders:
            row = rows.get(change.aggregate_id)
            before = (row["status"], row["status_since"]) if row else None
            row = fold_order(row, change.event, change.aggregate_id, change.version, change.position)
            rows[change.aggregate_id] = touched[change.aggregate_id] = row
            if before is not None:
                stays[(change.aggregate_id, before[1], before[0])] = _stay(change.aggregate_id, *before, row)
                if schema == self.name:  # a replay re-reads history; only live changes are observations
                    _observe_stay(before[0], before[1], row["status_since"])
            opened = _stay(change.aggregate_id, row["status"], row["status_since"], None)
            stays[(change.aggregate_id, row["status_since"], row["status"])] = opened
        upsert_rows(cursor, schema, "orders", ORDER_COLUMNS, ("order_id",), touched.values(), JSON_COLUMNS)
        upsert_rows(cursor, schema, "status_stays", STAY_COLUMNS, STAY_COLUMNS[:3], stays.values())
        if schema == self.name:  # a replay into a fresh schema has no listeners to tell
            announce(cursor, orders[-1].position, touched.values())
        self._remember(touched)

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
    """A replay's fold: every order row in memory, each written once, with one COPY, into empty tables."""

    def __init__(self) -> None:
        self.rows: dict[str, OrderRow] = {}
        self.closed_stays: list[dict[str, Any]] = []

    def add(self, changes: Sequence[Change]) -> None:
        """Fold a batch of the log."""
        for change in changes:
            if change.event.aggregate != "order":
                continue
            row = self.rows.get(change.aggregate_id)
            before = (row["status"], row["status_since"]) if row else None
            row = fold_order(row, change.event, change.aggregate_id, change.version, change.position)
            if before is not None:
                self.closed_stays.append(_stay(change.aggregate_id, *before, row))
            self.rows[change.aggregate_id] = row

    def write(self, cursor: Cursor[DictRow], schema: str) -> None:
        """Write every row and every stay (the open ones from the rows) into schema's empty tables."""
        copy_rows(cursor, sql.Identifier(schema, "orders"), ORDER_COLUMNS, self.rows.values(), JSON_COLUMNS)
        opened = (_stay(order_id, r["status"], r["status_since"], None) for order_id, r in self.rows.items())
        stays = sql.Identifier(schema, "status_stays")
        copy_rows(cursor, stays, STAY_COLUMNS, itertools.chain(self.closed_stays, opened))


def announce(cursor: Cursor[DictRow], position: int, rows: Iterable[OrderRow]) -> None:
    """NOTIFY the changed orders with the batch; delivered to listeners when the batch commits."""
    orders = [{k: row[k] for k in ANNOUNCED} for row in rows]
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
