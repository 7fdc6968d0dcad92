"""The MES projection: the operators' order table and every stay of an order in a status."""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
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
from projectors.measured import CATALOG, DEFAULT, LATEST_COMPLETIONS, Source, estimate_for, measured_estimate
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
STAY_COLUMNS = ("order_id", "status", "entered_at", "left_at", "held")
"""A stay is a stretch of time in one status, on hold or not (a hold and a release each start one)."""
NOTIFY_LIMIT = 7900
MANUFACTURING = "MANUFACTURING_STARTED"
"""The status whose stays, once an order leaves it, are a completion (projectors/measured.py)."""


@dataclass
class Estimates:
    """A schema's manufacturing estimates as its table holds them: the time (what start_by is derived
    from) and where it comes from, by material; a material without one takes the default."""

    expected: dict[str, timedelta] = field(default_factory=dict)
    sources: dict[str, Source] = field(default_factory=dict)

    def catalog(self, code: str) -> timedelta | None:
        """The catalog's estimate of material `code`, if it is the one in use (a catalog one always is)."""
        return self.expected.get(code) if self.sources.get(code) == CATALOG else None


class MesProjector:
    """Folds order events into mes.orders, mes.status_stays, the orders per status (mes.status_counts) and
    the completions of manufacturing (mes.manufacturing_completions, counted per material in
    mes.manufacturing_completion_counts), and the manufacturing estimates (the
    catalog's, else the measured ones) into mes.manufacturing_estimates and each open order's start_by."""

    name = "mes"

    def __init__(self, cache_size: int = 200_000) -> None:
        self._rows: dict[str, OrderRow] = {}
        self._cache_size = cache_size
        self._expected: dict[str, Estimates] = {}
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
        estimates = self._estimates(cursor, schema)
        expected = estimates.expected
        # Estimates first: start_by is derived from the latest, whatever the order of the batch's events.
        for change in changes:
            if change.event.aggregate == "catalog":
                for code, catalog in estimates_in(change.event.name, change.event.fields).items():
                    settle_estimate(cursor, schema, estimates, code, catalog)
        orders = [c for c in changes if c.event.aggregate == "order"]
        if not orders:
            return
        rows = self._rows_for(cursor, schema, {c.aggregate_id for c in orders})
        counted = {order_id: row["status"] for order_id, row in rows.items()}  # before the batch
        touched: dict[str, OrderRow] = {}
        stays: dict[tuple[str, str, str], dict[str, Any]] = {}
        finished: set[str] = set()
        for change in orders:
            row = rows.get(change.aggregate_id)
            before = (row["status"], row["status_since"], row["held_since"] is not None) if row else None
            row = fold_order(
                row, change.event, change.aggregate_id, change.version, change.position, expected
            )
            rows[change.aggregate_id] = touched[change.aggregate_id] = row
            if before is not None:
                status, since, held = before
                stays[(change.aggregate_id, since, status)] = _stay(
                    change.aggregate_id, status, since, row, held
                )
                if schema == self.name:  # a replay re-reads history; only live changes are observations
                    _observe_stay(status, since, row["status_since"], held)
                if status == MANUFACTURING and row["status"] != MANUFACTURING:
                    finished.add(change.aggregate_id)
            held_now = row["held_since"] is not None
            opened = _stay(change.aggregate_id, row["status"], row["status_since"], None, held_now)
            stays[(change.aggregate_id, row["status_since"], row["status"])] = opened
        upsert_rows(cursor, schema, "orders", ORDER_COLUMNS, ("order_id",), touched.values(), JSON_COLUMNS)
        upsert_rows(cursor, schema, "status_stays", STAY_COLUMNS, STAY_COLUMNS[:3], stays.values())
        if finished:
            measure(cursor, schema, estimates, record_completions(cursor, schema, finished))
            for row in touched.values():  # as the table now has them, should a measured estimate have moved
                finish_row(row, expected)
        # Orders per status: each order of the batch leaves the status it had before and joins its new one.
        moves: Counter[str] = Counter(row["status"] for row in touched.values())
        moves.subtract(counted.values())
        add_counts(cursor, schema, moves)
        if schema == self.name:  # a replay into a fresh schema has no listeners to tell
            announce(cursor, orders[-1].position, touched.values())
        self._remember(touched)

    def _estimates(self, cursor: Cursor[DictRow], schema: str) -> Estimates:
        if schema not in self._expected:
            rows = cursor.execute(
                sql.SQL("SELECT material_code, seconds, source FROM {}").format(
                    sql.Identifier(schema, "manufacturing_estimates")
                )
            )
            estimates = self._expected[schema] = Estimates()
            for r in rows:
                estimates.expected[r["material_code"]] = timedelta(seconds=r["seconds"])
                estimates.sources[r["material_code"]] = r["source"]
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
                    held = "t" if row["held_since"] is not None else "f"
                    fold_event(row, event, kind.target, order_id, version, position)
                    # COPY text needs no escaping here: a uuid, a status name, two ISO times, a flag.
                    lines.append(f"{order_id}\t{status}\t{since}\t{row['status_since']}\t{held}\n")
                if lines:
                    copy.write("".join(lines))
            # The stays still open: one per order, in its current status.
            flag = {False: "f", True: "t"}
            copy.write(
                "".join(
                    f"{i}\t{r['status']}\t{r['status_since']}\t\\N\t{flag[r['held_since'] is not None]}\n"
                    for i, r in rows.items()
                )
            )
        for row in rows.values():
            finish_row(row, expected)
        copy_rows(cursor, orders, ORDER_COLUMNS, rows.values(), JSON_COLUMNS, freeze=True)
        estimates = Estimates()
        catalog = {code: (needs, CATALOG) for code, needs in expected.items()}
        set_estimates(cursor, schema, estimates, catalog, update_orders=False)
        # Measured last, from every completion at once: start_by of the few open orders of a measured
        # material is re-derived once, as the live projection does when a figure moves.
        measure(cursor, schema, estimates, record_completions(cursor, schema, None))
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


def record_completions(cursor: Cursor[DictRow], schema: str, order_ids: Collection[str] | None) -> set[str]:
    """Record as completions the orders of `order_ids` (None: every order) that have left
    MANUFACTURING_STARTED, each once: the time of its stays there not on hold (whole seconds, up), and
    when it left; and count them per material. The materials of the completions recorded now."""
    # Every stay there closed: the order left the status, not only started or ended a hold in it (each
    # starts a stay of its own in the same status). An order never comes back to it.
    query = sql.SQL(
        """
        INSERT INTO {completions} (order_id, material_code, seconds, finished_at)
        SELECT order_id, material_code, seconds, finished_at
          FROM (SELECT s.order_id, o.material_code,
                       ceil(extract(epoch FROM coalesce(
                           sum(s.left_at - s.entered_at) FILTER (WHERE NOT s.held), interval '0')))::bigint
                       AS seconds,
                       max(s.left_at) AS finished_at
                  FROM {stays} AS s
                  JOIN {orders} AS o USING (order_id)
                 WHERE s.status = %s AND {only}
                 GROUP BY s.order_id, o.material_code
                HAVING bool_and(s.left_at IS NOT NULL)) AS done
         WHERE seconds > 0
            ON CONFLICT (order_id) DO NOTHING
        RETURNING material_code
        """
    ).format(
        completions=sql.Identifier(schema, "manufacturing_completions"),
        stays=sql.Identifier(schema, "status_stays"),
        orders=sql.Identifier(schema, "orders"),
        only=sql.SQL("true") if order_ids is None else sql.SQL("s.order_id = ANY(%s::uuid[])"),
    )
    params = (MANUFACTURING,) if order_ids is None else (MANUFACTURING, list(order_ids))
    recorded = Counter(r["material_code"] for r in cursor.execute(query, params))
    if not recorded:
        return set()
    cursor.executemany(
        sql.SQL(
            "INSERT INTO {} AS c (material_code, completions) VALUES (%s, %s) "
            "ON CONFLICT (material_code) DO UPDATE SET completions = c.completions + EXCLUDED.completions"
        ).format(sql.Identifier(schema, "manufacturing_completion_counts")),
        sorted(recorded.items()),
    )
    return set(recorded)


def measure(cursor: Cursor[DictRow], schema: str, estimates: Estimates, materials: Iterable[str]) -> None:
    """Settle the estimate of each of `materials` (with new completions) that the catalog gives none."""
    for code in sorted(materials):
        if estimates.catalog(code) is None:
            settle_estimate(cursor, schema, estimates, code, None)


def settle_estimate(
    cursor: Cursor[DictRow], schema: str, estimates: Estimates, code: str, catalog: timedelta | None
) -> None:
    """Put material `code` on the estimate `estimate_for` chooses, given its `catalog` estimate (None:
    the catalog gives none) and, without one, its measured estimate from the recorded completions."""
    measured = None if catalog is not None else measured_estimate(latest_completions(cursor, schema, code))
    needs, source = estimate_for(catalog, measured)
    set_estimates(cursor, schema, estimates, {code: None if source == DEFAULT else (needs, source)})


def latest_completions(cursor: Cursor[DictRow], schema: str, code: str) -> list[int]:
    """The seconds of material `code`'s latest LATEST_COMPLETIONS completions, the latest first (served by
    mes_manufacturing_completions_latest; the order id breaks ties, so a replay takes the same ones)."""
    query = sql.SQL(
        "SELECT seconds FROM {} WHERE material_code = %s ORDER BY finished_at DESC, order_id LIMIT %s"
    ).format(sql.Identifier(schema, "manufacturing_completions"))
    return [int(r["seconds"]) for r in cursor.execute(query, (code, LATEST_COMPLETIONS))]


def set_estimates(
    cursor: Cursor[DictRow],
    schema: str,
    estimates: Estimates,
    changed: Mapping[str, tuple[timedelta, Source] | None],
    update_orders: bool = True,
) -> None:
    """Record `changed` estimates (None: the default) in the schema's table and in `estimates`; re-derive
    the start_by of the open orders of each material whose estimate moved (whole seconds, as
    `order_rows.start_by` adds)."""
    expected, sources = estimates.expected, estimates.sources
    for code, estimate in changed.items():
        current = (expected[code], sources[code]) if code in expected else None
        if current == estimate:
            continue
        table = sql.Identifier(schema, "manufacturing_estimates")
        if estimate is None:
            expected.pop(code, None)
            sources.pop(code, None)
            cursor.execute(sql.SQL("DELETE FROM {} WHERE material_code = %s").format(table), (code,))
        else:
            expected[code], sources[code] = estimate
            cursor.execute(
                sql.SQL(
                    "INSERT INTO {} (material_code, seconds, source) VALUES (%s, %s, %s) "
                    "ON CONFLICT (material_code) DO UPDATE "
                    "SET seconds = EXCLUDED.seconds, source = EXCLUDED.source"
                ).format(table),
                (code, int(estimate[0].total_seconds()), estimate[1]),
            )
        needs = estimate[0] if estimate else EXPECTED_MANUFACTURING
        if update_orders and needs != (current[0] if current else EXPECTED_MANUFACTURING):
            seconds = int(needs.total_seconds())
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


def _observe_stay(status: str, entered_at: str, left_at: str, held: bool) -> None:
    seconds = (datetime.fromisoformat(left_at) - datetime.fromisoformat(entered_at)).total_seconds()
    histogram = metrics.HELD_SECONDS if held else metrics.STATUS_SECONDS
    histogram.labels(status).observe(max(seconds, 0.0))


def _stay(order_id: str, status: str, entered_at: str, row: OrderRow | None, held: bool) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "status": status,
        "entered_at": entered_at,
        "left_at": row["status_since"] if row else None,
        "held": held,
    }
