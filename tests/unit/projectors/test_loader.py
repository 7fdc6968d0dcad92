"""A replay's loader writes exactly what the live MES projection writes for the same events (hypothesis).

The loader decodes stored JSON straight into typed events and folds a whole log in memory; the live
projection decodes each event generically and upserts batch by batch. Both are run here on the same
interleaved log of random orders, against a cursor that records what they would send to PostgreSQL.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import sql

from orders_core.application import OrdersApplication
from orders_core.contracts import CATALOG_TOPIC, Change, read_stored_event
from projectors.mes import STAY_COLUMNS, MesProjector
from projectors.order_rows import EVENT_KINDS, ORDER_COLUMNS, finish_row, fold_event, fold_order
from projectors.runner import LogRow
from tests.orders import EVERYONE, new_order, valid_command

MAPPER = OrdersApplication().mapper  # in-memory application: the same transcoder as the real store
ESTIMATE = msgspec.json.encode(
    {
        "material": {
            "code": "AU750",
            "name": "Gold 750",
            "density_g_cm3": 15.5,
            "price_per_gram_minor": 6500,
            "manufacturing_hours": 7.25,
        }
    }
)


class Recorder:
    """A stand-in cursor: keeps the rows each COPY sends (by table) and the parameters of executemany."""

    def __init__(self) -> None:
        self.copied: dict[str, list[tuple[Any, ...]]] = {}
        self.many: list[tuple[str, list[tuple[Any, ...]]]] = []

    def copy(self, statement: sql.Composable) -> _Copy:
        table = statement.as_string().split()[1].replace('"', "")
        return _Copy(self.copied.setdefault(table, []))

    def execute(self, query: Any, params: Any = None) -> Iterator[Any]:
        return iter(())  # no stored rows: every order is new to the view (and no statement is kept)

    def executemany(self, query: sql.Composable, params: list[tuple[Any, ...]]) -> None:
        self.many.append((query.as_string(), list(params)))


class _Copy:
    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self.rows = rows

    def __enter__(self) -> _Copy:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def write_row(self, values: list[Any]) -> None:
        self.rows.append(tuple(values))

    def write(self, text: str) -> None:
        for line in text.splitlines():
            self.rows.append(tuple(None if v == "\\N" else v for v in line.split("\t")))


def order_log(seed: int, orders: int) -> list[LogRow]:
    """Stored events of `orders` random orders, interleaved, with catalog events in between."""
    rng = random.Random(seed)
    streams = []
    for i in range(orders):
        order = new_order(number=f"A-{100001 + i}")
        events = list(order.collect_events())
        for _ in range(rng.randrange(14)):
            candidates = [(a, c) for a in EVERYONE for c in order.allowed_for(a)]
            if not candidates:
                break
            actor, name = rng.choice(candidates)
            assert order.execute(valid_command(order, name), actor) is None
            events.extend(order.collect_events())
        streams.append([MAPPER.to_stored_event(e) for e in events])
    # The orders' material has its own manufacturing estimate, set before them (the live projection
    # re-derives rows already written when an estimate changes later: tests/integration).
    log: list[LogRow] = [(1, "catalog", 2, f"{CATALOG_TOPIC}.MaterialSet", ESTIMATE)]
    while any(streams):
        if rng.random() < 0.05:
            # Not even JSON: the loader must skip a topic it does not show without decoding it.
            log.append((len(log) + 1, "catalog", 1, f"{CATALOG_TOPIC}.ProductSet", b"\x00 not json"))
            continue
        stream = rng.choice([s for s in streams if s])
        stored = stream.pop(0)
        row = (str(stored.originator_id), stored.originator_version, stored.topic, bytes(stored.state))
        log.append((len(log) + 1, *row))
    return log


def live(log: list[LogRow], batch: int) -> Recorder:
    """What MesProjector.apply sends for the log in batches of `batch` (into a schema nobody listens on)."""
    cursor = Recorder()
    projection = MesProjector()
    changes = []
    for position, aggregate_id, version, topic, state in log:
        shown = topic in EVENT_KINDS or topic.endswith(".MaterialSet")
        event = read_stored_event(topic, state) if shown else None
        if event is not None:
            changes.append(Change(position, aggregate_id, version, event))
    for i in range(0, len(changes), batch):
        projection.apply(cursor, "fresh", changes[i : i + batch])  # type: ignore[arg-type]
    return cursor


def loaded(log: list[LogRow], batch: int) -> Recorder:
    cursor = Recorder()
    batches = [log[i : i + batch] for i in range(0, len(log), batch)]
    MesProjector().loader().load(cursor, "fresh", batches)  # type: ignore[arg-type]
    return cursor


def latest_rows(rows: list[tuple[Any, ...]]) -> dict[str, dict[str, Any]]:
    """The last row written per order (upserts replace earlier ones), JSON columns decoded."""
    found = {}
    for values in rows:
        row = dict(zip(ORDER_COLUMNS, values, strict=True))
        for column in ("quote", "status_times"):
            if isinstance(row[column], str):
                row[column] = msgspec.json.decode(row[column])
        found[row["order_id"]] = row
    return found


def final_stays(rows: list[tuple[Any, ...]]) -> dict[tuple[str, str, str], Any]:
    """Stays by key (order, entered, status) -> left_at, as the upserts leave them."""
    found = {}
    for values in rows:
        stay = dict(zip(STAY_COLUMNS, values, strict=True))
        found[(stay["order_id"], stay["entered_at"], stay["status"])] = stay["left_at"]
    return found


def counted(recorder: Recorder) -> dict[str, int]:
    total: Counter[str] = Counter()
    for query, params in recorder.many:
        assert "status_counts" in query
        for status, n in params:
            total[status] += n
    return {status: n for status, n in total.items() if n}


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10**6), st.integers(1, 6), st.integers(1, 40))
def test_the_loader_writes_what_the_live_projection_writes(seed: int, orders: int, batch: int) -> None:
    log = order_log(seed, orders)
    expected, got = live(log, batch), loaded(log, batch)
    staged_orders = [rows for table, rows in expected.copied.items() if table.endswith("orders")]
    staged_stays = [rows for table, rows in expected.copied.items() if table.endswith("status_stays")]
    assert latest_rows(got.copied["fresh.orders"]) == latest_rows([r for rows in staged_orders for r in rows])
    assert len(got.copied["fresh.orders"]) == orders  # each row written once
    assert final_stays(got.copied["fresh.status_stays"]) == final_stays(
        [r for rows in staged_stays for r in rows]
    )
    assert len(got.copied["fresh.status_stays"]) == len(final_stays(got.copied["fresh.status_stays"]))
    statuses = Counter(r["status"] for r in latest_rows(got.copied["fresh.orders"]).values())
    assert counted(got) == counted(expected) == dict(statuses)
    promised = [r for r in latest_rows(got.copied["fresh.orders"]).values() if r["promise_open"]]
    for row in promised:  # the material's 7 h 15 min before the end of the promised day
        assert row["start_by"].startswith(row["promised_date"]) and row["start_by"][11:19] == "16:45:00"
        assert datetime.fromisoformat(row["due_at"]) - datetime.fromisoformat(row["start_by"]) == timedelta(
            hours=7.25
        )


def test_typed_and_generic_decoding_fold_alike() -> None:
    """fold_order (a StoredEvent's fields) and fold_event (the stored JSON, typed) give the same rows."""
    typed: dict[str, dict[str, Any]] = {}
    generic: dict[str, dict[str, Any]] = {}
    for position, order_id, version, topic, state in order_log(5, 8):
        if topic not in EVENT_KINDS:
            continue
        stored = read_stored_event(topic, state)
        assert stored is not None
        kind = EVENT_KINDS[topic]
        typed[order_id] = fold_event(
            typed.get(order_id), kind.decode(state), kind.target, order_id, version, position
        )
        generic[order_id] = fold_order(generic.get(order_id), stored, order_id, version, position)
        assert finish_row(dict(typed[order_id])) == generic[order_id]
