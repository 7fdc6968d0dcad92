"""Measured manufacturing estimates on a real PostgreSQL, from events with known times.

Orders of one material are made with a hold in the middle of manufacturing; their events are stamped with
chosen times, so each completion's time is known to the second. The live projection folds them in
batches, the catalog sets and removes its own estimate between them, and a replay of the same log must
end with the same completions, estimates and start_by.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
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


class RolledBack(Exception):
    """The transaction of a batch given up before its commit."""


class View:
    """The live MES projection, applying log rows in a schema of a real database, batch by batch."""

    def __init__(self, database: str, schema: str) -> None:
        self.database, self.schema, self.projector = database, schema, MesProjector()

    def apply(self, rows: list[LogRow], batch: int = 3, fail: bool = False) -> None:
        """Apply `rows` in batches of `batch` in one transaction; with `fail`, roll it back at the end, as
        a connection lost before the commit would."""
        changes = []
        for position, aggregate_id, version, topic, state in rows:
            event = read_stored_event(topic, state)
            if event is not None:
                changes.append(Change(position, aggregate_id, version, event))
        with psycopg.connect(self.database, row_factory=dict_row) as conn, conn.cursor() as cursor:
            for i in range(0, len(changes), batch):
                self.projector.apply(cursor, self.schema, changes[i : i + batch])
            if fail:
                raise RolledBack

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
                r["row"]
                for r in self.query(
                    f"SELECT to_jsonb(t) AS row FROM {{}}.{table} AS t ORDER BY to_jsonb(t)::text"
                )
            ]
            for table in (
                "manufacturing_estimates",
                "manufacturing_completions",
                "manufacturing_completion_counts",
                "orders",
                "status_stays",
                "status_counts",
            )
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


# --- any batches, interleavings, rolled-back batches and restarts ------------------------------------------

worked_minutes = st.sampled_from([50, 170, 180, 185, 200, 420])
"""Times worked that put the median on either side of a 15-minute step, so the measured estimate moves."""
made_orders = st.lists(st.tuples(worked_minutes, st.booleans()), min_size=20, max_size=26)
"""Each completed order: its minutes worked and whether it was held on the way."""


def renumbered(row: LogRow, log: list[LogRow]) -> None:
    """Append `row` to `log` at the log's next position."""
    log.append((len(log) + 1, *row[1:]))


def order_events(index: int, minutes: int, held: bool) -> list[LogRow]:
    """One order's rows, from creation to completion (held in the middle when `held`), its times chosen."""
    rows: list[LogRow] = []
    order = new_order(number=f"A-{300001 + index}")
    began = START + timedelta(days=index)
    stamped(walked(order, TO_MANUFACTURING), iter(began + timedelta(minutes=m) for m in range(10)), rows)
    started = began + timedelta(hours=1)
    if held:
        steps, pause = ["StartManufacturing", "HoldOrder", "ReleaseOrder", "CompleteManufacturing"], HELD
        times = [started, started + timedelta(minutes=1), started + timedelta(minutes=1) + pause]
    else:
        steps, pause, times = ["StartManufacturing", "CompleteManufacturing"], timedelta(0), [started]
    times.append(started + timedelta(minutes=minutes) + pause)
    stamped(walked(order, steps), iter(times), rows)
    return rows


def fresh_schema(database: str, name: str) -> str:
    """An empty copy of the MES view's tables in schema `name` (prepare_schema's, renamed)."""
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
        conn.execute(
            sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(
                sql.Identifier(prepare_schema(database, "mes")), sql.Identifier(name)
            )
        )
    return name


@settings(
    max_examples=15,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(made=made_orders, data=st.data())
def test_any_batches_interleavings_rollbacks_and_restarts_end_as_the_replay(
    database: str, made: list[tuple[int, bool]], data: st.DataObject
) -> None:
    # Each order's rows in its own order, the orders interleaved as drawn; open orders and the catalog's
    # estimate set and removed at drawn points between them. A stream's entries append to the log.
    streams: list[list[Callable[[list[LogRow]], None]]] = []
    for i, (minutes, held) in enumerate(made):
        streams.append([partial(renumbered, row) for row in order_events(i, minutes, held)])
    for k in range(2):
        order = walked(new_order(number=f"A-{399990 + k}"), TO_MANUFACTURING)
        rows: list[LogRow] = []
        stamped(order, iter(START + timedelta(days=40, minutes=m) for m in range(10)), rows)
        streams.append([partial(renumbered, row) for row in rows])
    catalog = data.draw(st.lists(st.sampled_from([None, 5.5, 30.0]), max_size=3), label="catalog")
    streams.append([partial(material_set, hours) for hours in catalog])  # in their order, between others
    log: list[LogRow] = []
    while streams := [s for s in streams if s]:
        stream = streams[data.draw(st.integers(0, len(streams) - 1), label="next stream")]
        stream.pop(0)(log)
    cuts = sorted(set(data.draw(st.lists(st.integers(1, len(log) - 1), max_size=12), label="cuts")))
    batches = [log[a:b] for a, b in itertools.pairwise([0, *cuts, len(log)])]
    failing = data.draw(st.integers(0, len(batches) - 1), label="rolled back batch")
    restart = data.draw(st.integers(0, len(batches) - 1), label="restart before batch")

    live = View(database, fresh_schema(database, "mes_live"))
    for i, batch in enumerate(batches):
        if i == restart:  # a new process: nothing in memory, all read back from the tables
            live.projector = MesProjector()
        if i == failing:  # applied, then the connection is lost before the commit: the runner forgets
            with contextlib.suppress(RolledBack):
                live.apply(batch, batch=len(batch), fail=True)
            live.projector.forget()
        live.apply(batch, batch=len(batch))
    replayed = View(database, prepare_schema(database, "mes"))
    with psycopg.connect(database, row_factory=dict_row) as conn, conn.cursor() as cursor:
        MesProjector().loader().load(cursor, replayed.schema, [log])
    assert live.tables() == replayed.tables()
    completions = live.query("SELECT count(*) AS n FROM {}.manufacturing_completions")[0]["n"]
    counted = live.query("SELECT completions FROM {}.manufacturing_completion_counts")
    assert completions == len(made) and counted == [{"completions": len(made)}]
    final = catalog[-1] if catalog else None
    if final is not None:
        assert live.estimate() == (final * 3600, "catalog")
    else:
        estimate = live.estimate()
        assert estimate is not None and estimate[1] == "measured"
    with psycopg.connect(database, autocommit=True) as dropping:
        for view in (live, replayed):
            dropping.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(view.schema)))
