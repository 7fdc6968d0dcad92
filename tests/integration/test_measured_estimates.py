"""Measured manufacturing estimates on a real PostgreSQL, from events with known times.

Orders of one material are made with a hold in the middle of manufacturing; their events are stamped with
chosen times, so each completion's time is known to the second. The live projection folds them in
batches, the catalog sets and removes its own estimate between them, and a replay of the same log must
end with the same completions, estimates and start_by.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from orders_core.application import OrdersApplication
from orders_core.contracts import CATALOG_TOPIC, Change, read_stored_event
from orders_core.order import Order
from projectors.mes import MesProjector
from projectors.replay import prepare_schema
from projectors.runner import LogRow
from tests.orders import EVERYONE, new_order, valid_command

MAPPER = OrdersApplication().mapper  # in-memory application: the same transcoder as the real store
MATERIAL = "AU750"  # the material of tests.orders' orders
TO_MANUFACTURING = ["AttachModel", "SubmitOrder", "RecordQuote", "ApproveManufacturing"]
START = datetime(2026, 11, 1, tzinfo=UTC)
WORKED = timedelta(hours=3)
"""Each order's time in MANUFACTURING_STARTED not on hold (half of them two seconds more)."""
HELD = timedelta(hours=2)
"""Each order's hold in the middle of manufacturing: the estimates must not count it."""


def walked(order: Order, commands: list[str]) -> Order:
    for name in commands:
        actor = next(a for a in EVERYONE if name in order.allowed_for(a))
        assert order.execute(valid_command(order, name), actor) is None
    return order


def stamped(order: Order, times: Iterator[datetime], log: list[LogRow]) -> None:
    """Append the order's pending events to `log`, each stamped with the next of `times`."""
    for event in order.collect_events():
        stored = MAPPER.to_stored_event(event)
        state = json.loads(bytes(stored.state))
        state["timestamp"]["_data_"] = next(times).isoformat()
        log.append(
            (
                len(log) + 1,
                str(stored.originator_id),
                stored.originator_version,
                stored.topic,
                json.dumps(state).encode(),
            )
        )


def completed(index: int, log: list[LogRow]) -> tuple[str, int, datetime]:
    """An order made from start to completion, held in the middle; (id, seconds worked, finished at)."""
    order = new_order(number=f"A-{200001 + index}")
    began = START + timedelta(days=index)
    stamped(walked(order, TO_MANUFACTURING), iter(began + timedelta(minutes=m) for m in range(10)), log)
    worked = WORKED + timedelta(seconds=2 * (index % 2))
    started, held = began + timedelta(hours=1), began + timedelta(hours=2)
    released = held + HELD
    finished = released + worked - (held - started)
    times = iter([started, held, released, finished])
    stamped(
        walked(order, ["StartManufacturing", "HoldOrder", "ReleaseOrder", "CompleteManufacturing"]),
        times,
        log,
    )
    return str(order.id), int(worked.total_seconds()), finished


def material_set(hours: float | None, log: list[LogRow]) -> None:
    material = {"code": MATERIAL, "name": "Gold 750", "density_g_cm3": 15.5, "price_per_gram_minor": 6500}
    if hours is not None:
        material["manufacturing_hours"] = hours
    state = json.dumps({"material": material}).encode()
    log.append((len(log) + 1, "catalog", len(log) + 1, f"{CATALOG_TOPIC}.MaterialSet", state))


class View:
    """The live MES projection, applying log rows in a schema of a real database, batch by batch."""

    def __init__(self, database: str, schema: str) -> None:
        self.database, self.schema, self.projector = database, schema, MesProjector()

    def apply(self, rows: list[LogRow], batch: int = 3) -> None:
        changes = []
        for position, aggregate_id, version, topic, state in rows:
            event = read_stored_event(topic, state)
            if event is not None:
                changes.append(Change(position, aggregate_id, version, event))
        with psycopg.connect(self.database, row_factory=dict_row) as conn, conn.cursor() as cursor:
            for i in range(0, len(changes), batch):
                self.projector.apply(cursor, self.schema, changes[i : i + batch])

    def estimate(self) -> tuple[int, str] | None:
        rows = self.query(
            "SELECT seconds, source FROM {}.manufacturing_estimates WHERE material_code = %s", MATERIAL
        )
        return (rows[0]["seconds"], rows[0]["source"]) if rows else None

    def needs(self, order_id: str) -> timedelta:
        """How much manufacturing time the order's start_by leaves before the end of its promised day."""
        [row] = self.query("SELECT due_at - start_by AS needs FROM {}.orders WHERE order_id = %s", order_id)
        needs: timedelta = row["needs"]
        return needs

    def tables(self) -> dict[str, list[Any]]:
        return {
            table: [
                r["row"] for r in self.query(f"SELECT to_jsonb(t) AS row FROM {{}}.{table} AS t ORDER BY 1")
            ]
            for table in ("manufacturing_estimates", "manufacturing_completions", "orders")
        }

    def query(self, statement: str, *params: Any) -> list[dict[str, Any]]:
        with psycopg.connect(self.database, row_factory=dict_row) as conn:
            return conn.execute(sql.SQL(statement).format(sql.Identifier(self.schema)), params).fetchall()


@pytest.fixture
def log() -> list[LogRow]:
    return []


def test_measured_estimates_exclude_holds_need_twenty_completions_and_yield_to_the_catalog(
    database: str, log: list[LogRow]
) -> None:
    view = View(database, "mes")
    waiting = walked(
        new_order(number="A-200000"), TO_MANUFACTURING
    )  # an open promise, its start_by to follow
    stamped(waiting, iter(START + timedelta(minutes=m) for m in range(10)), log)
    made = [completed(i, log) for i in range(19)]
    view.apply(log)
    assert view.estimate() is None and view.needs(str(waiting.id)) == timedelta(days=2)
    completions = view.query(
        "SELECT order_id::text, material_code, seconds, finished_at FROM {}.manufacturing_completions "
        "ORDER BY finished_at"
    )
    # the hold's two hours are not counted
    assert [(c["order_id"], c["material_code"], c["seconds"], c["finished_at"]) for c in completions] == [
        (order_id, MATERIAL, seconds, finished) for order_id, seconds, finished in made
    ]
    # The 20th: ten of 3 h and ten of 3 h 2 s, a median of 3 h 1 s, rounded up to 3 h 15 min.
    seen = len(log)
    made.append(completed(19, log))
    view.apply(log[seen:])
    measured = timedelta(hours=3, minutes=15)
    assert view.estimate() == (measured.total_seconds(), "measured")
    assert view.needs(str(waiting.id)) == measured
    # The catalog's estimate wins; removing it falls back to the measured one.
    seen = len(log)
    material_set(7.25, log)
    view.apply(log[seen:])
    assert view.estimate() == (7.25 * 3600, "catalog") and view.needs(str(waiting.id)) == timedelta(
        hours=7.25
    )
    seen = len(log)
    material_set(None, log)
    view.apply(log[seen:])
    assert (
        view.estimate() == (measured.total_seconds(), "measured") and view.needs(str(waiting.id)) == measured
    )
    # A replay of the same log ends alike.
    live = view.tables()
    replayed = View(database, prepare_schema(database, "mes"))
    with psycopg.connect(database, row_factory=dict_row) as conn, conn.cursor() as cursor:
        MesProjector().loader().load(cursor, replayed.schema, [log])
    assert replayed.tables() == live
