"""Projections on a real PostgreSQL: equal to the aggregates, gap-free under concurrent writers, exactly
once across crashes, replayable, and with a standby that takes over."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import msgspec
import psycopg
import pytest
from eventsourcing.persistence import OperationalError
from psycopg.rows import dict_row

from backbone.database import eventsourcing_env
from backbone.wiring import projection_runner
from orders_core.application import OrdersApplication
from orders_core.contracts import Change
from orders_core.lifecycle import Status
from orders_core.order import Order
from orders_core.outcomes import Accepted
from projectors.replay import replay
from read_models.mes import MesFilters, MesOrderSort, find_orders, status_board
from tests.conftest import BACKBONE, ROOT
from tests.orders import EVERYONE, OWNER, SELLER, initiate_command, valid_command

VIEW_COLUMNS = (
    "order_id::text, status, version, operator_id, quote_total_minor, promised_date::text, "
    "nullif(approved_at, '-infinity')"
)


@pytest.fixture
def app(database: str) -> Iterator[OrdersApplication]:
    application = OrdersApplication(env=eventsourcing_env(database, pool_size=8))
    yield application
    application.close()


def busy_order(app: OrdersApplication, steps: int, rng: random.Random) -> Order:
    """An order walked `steps` allowed commands along, by whoever may."""
    result = app.initiate(initiate_command(), OWNER)
    assert isinstance(result, Accepted)
    order = result.value
    for _ in range(steps):
        candidates = [(a, c) for a in EVERYONE for c in order.allowed_for(a)]
        if not candidates:
            break
        actor, name = rng.choice(candidates)
        done = app.execute(order.id, valid_command(order, name), actor)
        assert isinstance(done, Accepted), done
        order = done.value
    return order


def walked(app: OrdersApplication, commands: list[str]) -> Order:
    """An order moved by `commands` in turn, each by the first actor allowed to."""
    result = app.initiate(initiate_command(), OWNER)
    assert isinstance(result, Accepted)
    order = result.value
    for name in commands:
        actor = next(a for a in EVERYONE if name in order.allowed_for(a))
        done = app.execute(order.id, valid_command(order, name), actor)
        assert isinstance(done, Accepted), done
        order = done.value
    return order


def view(database: str, schema: str = "mes") -> list[tuple[Any, ...]]:
    with psycopg.connect(database) as conn:
        return conn.execute(f"SELECT {VIEW_COLUMNS} FROM {schema}.orders ORDER BY order_id").fetchall()


def full_view(database: str) -> list[Any]:
    """Every column of every MES order row."""
    with psycopg.connect(database) as conn:
        return [r[0] for r in conn.execute("SELECT to_jsonb(o) FROM mes.orders AS o ORDER BY order_id")]


def test_the_views_equal_the_aggregates(app: OrdersApplication, database: str) -> None:
    rng = random.Random(7)
    orders = [busy_order(app, rng.randint(0, 12), rng) for _ in range(25)]
    for name in ("mes", "shop"):
        assert projection_runner(name, database).catch_up() == app.position()
    with psycopg.connect(database, row_factory=dict_row) as conn:
        columns = "order_id, status, version, number, promised_date"
        mes_columns = f"{columns}, operator_id, nullif(approved_at, '-infinity') AS approved_at"
        mes = {r["order_id"]: r for r in conn.execute(f"SELECT {mes_columns} FROM mes.orders")}
        shop = {r["order_id"]: r for r in conn.execute(f"SELECT {columns} FROM shop.orders")}
        materials = conn.execute("SELECT count(*) AS n FROM shop.materials").fetchone()
    assert materials is not None and materials["n"] == len(app.catalog().materials)
    for order in orders:
        for row in (mes[order.id], shop[order.id]):
            assert (row["status"], row["version"], row["number"]) == (
                order.status.value,
                order.version,
                order.number,
            )
            assert row["promised_date"] == order.promised_date
        assert mes[order.id]["operator_id"] == order.operator_id
        assert mes[order.id]["approved_at"] == order.entered_at.get(Status.MANUFACTURING_APPROVED.value)


def test_following_concurrent_writers_skips_nothing(app: OrdersApplication, database: str) -> None:
    runner = projection_runner("mes", database, batch_size=7)
    stop = threading.Event()
    follower = threading.Thread(target=runner.run, args=(stop,))
    follower.start()
    try:
        with ThreadPoolExecutor(6) as pool:
            orders = list(pool.map(lambda seed: busy_order(app, 8, random.Random(seed)), range(60)))
        deadline = time.monotonic() + 30
        while runner.position() < app.position() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        follower.join(10)
    assert runner.position() == app.position()
    seen = {row[0]: row for row in view(database)}
    assert len(seen) == len(orders)
    for order in orders:
        assert seen[str(order.id)][1:3] == (order.status.value, order.version)


class FailingMidBatch:
    """Wraps a projection and fails after it has written its rows, before tracking is written, as a lost
    connection would (a transient fault: the runner retries the batch rather than narrowing it down)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name = inner, inner.name

    def apply(self, cursor: Any, schema: str, changes: Sequence[Change]) -> None:
        self.inner.apply(cursor, schema, changes)
        raise psycopg.OperationalError("connection lost in the middle of a batch")

    def forget(self) -> None:
        self.inner.forget()


def test_a_batch_that_fails_midway_leaves_neither_rows_nor_position(
    app: OrdersApplication, database: str
) -> None:
    busy_order(app, 3, random.Random(1))
    runner = projection_runner("mes", database)
    runner.projection = FailingMidBatch(runner.projection)
    with pytest.raises(OperationalError):  # the datastore's name for psycopg's
        runner.catch_up()
    assert runner.position() == 0 and view(database) == []


def stays(database: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(database) as conn:
        return conn.execute("SELECT * FROM mes.status_stays ORDER BY order_id, entered_at, status").fetchall()


def status_counts(database: str) -> dict[str, int]:
    """mes.status_counts, checked against a count of the rows (a status no order is in has no row)."""
    with psycopg.connect(database) as conn:
        kept = dict(conn.execute("SELECT status, orders FROM mes.status_counts").fetchall())
        counted = dict(conn.execute("SELECT status, count(*) FROM mes.orders GROUP BY status").fetchall())
    assert kept == counted
    return kept


def test_the_counts_per_status_follow_the_rows(app: OrdersApplication, database: str) -> None:
    rng = random.Random(17)
    orders = [busy_order(app, rng.randint(0, 6), rng) for _ in range(30)]
    runner = projection_runner("mes", database, batch_size=5)
    runner.catch_up()
    assert sum(status_counts(database).values()) == len(orders)
    # Orders already in the view move on (a status loses one, another gains one), new ones come in.
    for order in orders[:15]:
        for _ in range(rng.randint(1, 5)):
            candidates = [(a, c) for a in EVERYONE for c in order.allowed_for(a)]
            if not candidates:
                break
            actor, name = rng.choice(candidates)
            done = app.execute(order.id, valid_command(order, name), actor)
            assert isinstance(done, Accepted), done
            order = done.value
    busy_order(app, 3, rng)
    runner.catch_up()
    assert sum(status_counts(database).values()) == len(orders) + 1
    # A batch that fails midway leaves the counts as they were, with the rows.
    before = status_counts(database)
    busy_order(app, 4, rng)
    failing = projection_runner("mes", database)
    failing.projection = FailingMidBatch(failing.projection)
    with pytest.raises(OperationalError):  # the datastore's name for psycopg's
        failing.catch_up()
    assert status_counts(database) == before
    runner.projection.forget()
    runner.catch_up()
    assert sum(status_counts(database).values()) == len(orders) + 2


REFERENCE_SERIES = """
    SELECT t AS at,
           (SELECT count(*) FROM mes.status_stays s
            WHERE s.status = 'MANUFACTURING_APPROVED' AND s.entered_at <= t AND NOT s.held
              AND (s.left_at IS NULL OR s.left_at > t)) AS waiting
    FROM generate_series(date_trunc('hour', now()) - interval '23 hours', date_trunc('hour', now()),
                         interval '1 hour') AS t
    UNION ALL
    SELECT now(), count(*) FROM mes.orders WHERE status = 'MANUFACTURING_APPROVED' AND held_since IS NULL
    ORDER BY at
"""
REFERENCE_WAITS = """
    SELECT count(seconds) AS n,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) AS p50,
           percentile_cont(0.9) WITHIN GROUP (ORDER BY seconds) AS p90,
           percentile_cont(0.99) WITHIN GROUP (ORDER BY seconds) AS p99,
           max(seconds) AS max
    FROM (SELECT order_id,
                 date_part('epoch', sum(coalesce(left_at, now()) - entered_at) FILTER (WHERE held = %s))
                 AS seconds
          FROM mes.status_stays
          WHERE status = 'MANUFACTURING_APPROVED'
            AND (left_at IS NULL OR left_at > now() - interval '30 days')
          GROUP BY order_id) AS per_order
"""
"""The board's waiting series and waits by their plain definitions (a query per hour, an OR on the
stays): what status_board computes faster must equal these."""


def test_the_status_board_equals_its_plain_definitions(app: OrdersApplication, database: str) -> None:
    rng = random.Random(9)
    for _ in range(12):
        busy_order(app, rng.randint(4, 8), rng)
    projection_runner("mes", database).catch_up()
    with psycopg.connect(database, row_factory=dict_row) as conn:  # one transaction: one now()
        # Stays around every edge the faster queries have: on and just off the hour, open, left in and
        # out of the last 24 hours and 30 days, and in other statuses.
        hour = conn.execute("SELECT date_trunc('hour', now()) AS h").fetchone()
        assert hour is not None
        edges = [timedelta(0), timedelta(microseconds=1), -timedelta(microseconds=1), timedelta(minutes=30)]
        times = [hour["h"] - timedelta(hours=h) + e for h in (0, 1, 5, 23, 24, 25, 24 * 31) for e in edges]
        stays = []
        orders = [str(uuid.uuid4()) for _ in range(40)]  # an order's stays: waiting, held, waiting again
        for entered in times:
            for left in [None, *(t for t in times if t > entered)][:6]:
                held = rng.random() < 0.3
                stays.append((rng.choice(orders), rng.choice(STATUSES), entered, left, held))
        conn.cursor().executemany(
            "INSERT INTO mes.status_stays (order_id, status, entered_at, left_at, held) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            stays,
        )
        board = status_board(conn)
        series = conn.execute(REFERENCE_SERIES).fetchall()
        waits = conn.execute(REFERENCE_WAITS, (False,)).fetchone()
        held_waits = conn.execute(REFERENCE_WAITS, (True,)).fetchone()
        on_hold = conn.execute(
            "SELECT status, count(*) AS n FROM mes.orders WHERE held_since IS NOT NULL GROUP BY status"
        ).fetchall()
        counted = conn.execute("SELECT status, count(*) AS n FROM mes.orders GROUP BY status").fetchall()
    per_status = {r["status"]: r["n"] for r in counted}
    assert [(p["at"], p["waiting"]) for p in board["approved_waiting_series"]] == [
        (p["at"], p["waiting"]) for p in series
    ]
    assert max(p["waiting"] for p in series[:-1]) > 0
    assert board["approved_wait_seconds"] == waits
    assert board["approved_held_seconds"] == held_waits and held_waits is not None and held_waits["n"] > 0
    assert board["on_hold"] == {r["status"]: r["n"] for r in on_hold}
    assert {s: n for s, n in board["counts"].items() if n} == per_status


STATUSES = ["MANUFACTURING_APPROVED"] * 4 + ["SUBMITTED", "MANUFACTURING_STARTED"]


def mes_indexes(database: str) -> list[str]:
    """Each index of schema mes by its definition (names aside), primary keys as constraints."""
    with psycopg.connect(database) as conn:
        rows = conn.execute(
            "SELECT regexp_replace(indexdef, 'INDEX \\S+ ON', 'INDEX ON'), "
            "EXISTS (SELECT FROM pg_constraint c "
            "        WHERE c.conindid = (schemaname || '.' || indexname)::regclass) "
            "FROM pg_indexes WHERE schemaname = 'mes' ORDER BY 1"
        ).fetchall()
    return [f"{d} constraint={c}" for d, c in rows]


def statistics_targets(database: str) -> list[tuple[str, str, int]]:
    """Columns of schema mes with a statistics target of their own."""
    with psycopg.connect(database) as conn:
        rows = conn.execute(
            "SELECT c.relname, a.attname, a.attstattarget FROM pg_attribute a "
            "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'mes' AND c.relkind = 'r' AND a.attstattarget >= 0 ORDER BY 1, 2"
        ).fetchall()
    return [(str(t), str(c), int(v)) for t, c, v in rows]


def set_manufacturing_hours(app: OrdersApplication, code: str, hours: float | None) -> None:
    material = msgspec.structs.replace(app.catalog().materials[code], manufacturing_hours=hours)
    assert isinstance(app.change_catalog(lambda c: c.set_material(material, SELLER)), Accepted)


def test_replay_rebuilds_the_same_view_and_swaps_it_in(app: OrdersApplication, database: str) -> None:
    rng = random.Random(3)
    runner = projection_runner("mes", database)
    for i in range(20):
        busy_order(app, rng.randint(0, 12), rng)
        if i == 5:  # estimates change under orders the live view has already written
            runner.catch_up()
            set_manufacturing_hours(app, "AU750", 7.25)
        if i == 12:
            runner.catch_up()
            set_manufacturing_hours(app, "AU750", 30.5)
            set_manufacturing_hours(app, "AG925", 5)
    set_manufacturing_hours(app, "AG925", None)
    runner.catch_up()
    with psycopg.connect(database) as conn:
        start_by = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE start_by = (promised_date + 1)::timestamp AT TIME ZONE "
            "'UTC' - interval '30 hours 30 minutes') FROM mes.orders WHERE promise_open"
        ).fetchone()
        estimates = conn.execute("SELECT * FROM mes.manufacturing_estimates").fetchall()
    assert start_by is not None and start_by[0] == start_by[1] > 0
    assert estimates == [("AU750", 30.5 * 3600, "catalog")]
    live = view(database)
    live_rows = full_view(database)
    live_stays = stays(database)
    live_counts = status_counts(database)
    migrated_indexes = mes_indexes(database)
    with psycopg.connect(database) as conn:  # as a migration may set one (CREATE TABLE LIKE copies none)
        conn.execute("ALTER TABLE mes.orders ALTER COLUMN search SET STATISTICS 300")
    migrated_targets = statistics_targets(database)
    assert ("orders", "search", 300) in migrated_targets
    batches: list[int] = []
    position = replay(
        database,
        "mes",
        lambda schema: projection_runner("mes", database, schema, 13),
        lambda n, p: batches.append(n),
    )
    assert position == app.position() and len(batches) > 1
    assert view(database) == live
    assert full_view(database) == live_rows
    assert stays(database) == live_stays
    assert status_counts(database) == live_counts
    # Again, from the view the first replay built: it must have kept every key and index of the migrated one.
    replay(database, "mes", lambda schema: projection_runner("mes", database, schema, 13), lambda n, p: None)
    assert view(database) == live
    assert mes_indexes(database) == migrated_indexes
    assert statistics_targets(database) == migrated_targets
    with psycopg.connect(database) as conn:
        schemas = {r[0] for r in conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'mes%'")}
        tracked = conn.execute(
            "SELECT notification_id FROM mes.tracking WHERE application_name = 'orders'"
        ).fetchone()
    assert schemas == {"mes"} and tracked == (position,)


def test_a_load_fills_only_an_empty_schema(app: OrdersApplication, database: str) -> None:
    busy_order(app, 3, random.Random(2))
    runner = projection_runner("mes", database)
    runner.catch_up()
    live = full_view(database)
    # Its COPY would double rows (and its TRUNCATE drop them): a view with a position is caught up instead.
    with pytest.raises(ValueError, match="empty"):
        runner.load()
    assert full_view(database) == live


def start_projector(database: str, name: str, batch_size: int = 1000) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DATABASE_URL": database}
    args = [str(BACKBONE), "projector", name, "--batch-size", str(batch_size)]
    return subprocess.Popen(args, env=env, cwd=ROOT, stderr=subprocess.DEVNULL)


def wait_for(predicate: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_killed_runners_resume_to_the_same_view_as_a_replay(app: OrdersApplication, database: str) -> None:
    rng = random.Random(11)
    for _ in range(150):
        busy_order(app, rng.randint(2, 12), rng)
    head = app.position()
    runner = projection_runner("mes", database)
    for _ in range(6):
        # Small batches, so that some kills land in the middle of one.
        process = start_projector(database, "mes", batch_size=25)
        time.sleep(rng.uniform(0.3, 1.2))
        process.send_signal(signal.SIGKILL)
        process.wait()
    process = start_projector(database, "mes")
    try:
        assert wait_for(lambda: runner.position() == head, 60)
    finally:
        process.terminate()
        process.wait(10)
    live = view(database)
    replay(database, "mes", lambda schema: projection_runner("mes", database, schema), lambda n, p: None)
    assert view(database) == live


def active_projector_pid(database: str, name: str) -> int:
    with psycopg.connect(database) as conn:
        row = conn.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND a.application_name LIKE %s",
            (f"projection {name} pid %",),
        ).fetchone()
    assert row is not None
    return int(row[0].rsplit(" ", 1)[1])


def test_a_standby_takes_over_when_the_active_runner_dies(app: OrdersApplication, database: str) -> None:
    runner = projection_runner("mes", database)
    first = start_projector(database, "mes")
    second = start_projector(database, "mes")
    try:
        busy_order(app, 2, random.Random(5))
        assert wait_for(lambda: runner.position() == app.position(), 20)
        active_pid = active_projector_pid(database, "mes")
        active, standby = (first, second) if active_pid == first.pid else (second, first)
        assert active_pid == active.pid
        active.send_signal(signal.SIGKILL)
        active.wait()
        busy_order(app, 2, random.Random(6))
        started = time.monotonic()
        assert wait_for(lambda: runner.position() == app.position(), 20)
        assert time.monotonic() - started < 10
        assert standby.poll() is None
    finally:
        for process in (first, second):
            if process.poll() is None:
                process.terminate()
                process.wait(10)


def test_mes_pages_list_newest_approved_first_then_the_rest_each_once(
    app: OrdersApplication, database: str
) -> None:
    from psycopg.rows import dict_row

    rng = random.Random(21)
    orders = [busy_order(app, rng.randint(0, 16), rng) for _ in range(55)]
    orders += [
        walked(app, ["AttachModel", "SubmitOrder", "RecordQuote", "ApproveManufacturing"]) for _ in range(5)
    ]
    approved_orders = [o for o in orders if Status.MANUFACTURING_APPROVED.value in o.entered_at]
    assert 0 < len(approved_orders) < len(orders), "the data must mix approved and never-approved orders"
    projection_runner("mes", database).catch_up()
    for sort in MesOrderSort:
        seen: list[dict[str, Any]] = []
        cursor = None
        with psycopg.connect(database, row_factory=dict_row) as conn:
            while True:
                page = find_orders(conn, MesFilters(sort=sort, cursor=cursor, limit=7))
                seen += page.items
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
        assert sorted(i["order_id"] for i in seen) == sorted(str(o.id) for o in orders)
        approved = [i["approved_at"] for i in seen if i["approved_at"] is not None]
        if sort in (MesOrderSort.URGENCY, MesOrderSort.DUE):  # then the orders without an open promise
            field = "start_by" if sort is MesOrderSort.URGENCY else "promised_date"
            keys = [(i[field], i["order_id"]) for i in seen if i["start_by"] is not None]
            assert keys == sorted(keys) and len(keys) > 0
            assert all(i["start_by"] is None for i in seen[len(keys) :])
            assert all(i["urgency"] and i["slack_seconds"] is not None for i in seen[: len(keys)])
        elif sort is MesOrderSort.CREATED:
            created = [i["created_at"] for i in seen]
            assert created == sorted(created, reverse=True)
        elif sort is MesOrderSort.APPROVED:
            assert approved == sorted(approved, reverse=True)
            assert all(i["approved_at"] is None for i in seen[len(approved) :]), (
                "never-approved orders come last"
            )
        else:
            assert [i["approved_at"] for i in seen if i["approved_at"] is not None] == sorted(approved)


def test_text_search_pages_are_the_same_whichever_way_they_are_found(
    app: OrdersApplication, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """find_orders tests the next TEXT_WALK orders for the text, then asks the trigram index: any walk
    length gives the same pages, which are the matching orders in the page order, each once."""
    import read_models.mes

    rng = random.Random(31)
    words = {"common": 0.6, "middling": 0.2, "rare": 0.05}
    titles = {}
    for _ in range(60):
        title = " ".join(["Ring", *(w for w, share in words.items() if rng.random() < share)])
        result = app.initiate(initiate_command(item_title=title), OWNER)
        assert isinstance(result, Accepted)
        order = result.value
        for _ in range(rng.choice((0, 0, 5, 6))):  # some approved (and beyond), most not
            candidates = [(a, c) for a in EVERYONE for c in order.allowed_for(a)]
            if not candidates:
                break
            actor, name = rng.choice(candidates)
            done = app.execute(order.id, valid_command(order, name), actor)
            assert isinstance(done, Accepted), done
            order = done.value
        titles[str(order.id)] = title.lower()
    projection_runner("mes", database).catch_up()

    def pages(word: str, sort: MesOrderSort) -> list[str]:
        seen: list[str] = []
        cursor = None
        with psycopg.connect(database, row_factory=dict_row) as conn:
            while True:
                page = find_orders(conn, MesFilters(text=word, sort=sort, cursor=cursor, limit=4))
                seen += [i["order_id"] for i in page.items]
                if page.next_cursor is None:
                    return seen
                cursor = page.next_cursor

    for word in [*words, "nowhere"]:
        expected = sorted(i for i, t in titles.items() if word in t)
        for sort in (MesOrderSort.APPROVED, MesOrderSort.APPROVED_OLDEST):
            found = {}
            for walk in (1, 7, 10**6):
                monkeypatch.setattr(read_models.mes, "TEXT_WALK", walk)
                found[walk] = pages(word, sort)
            assert found[1] == found[7] == found[10**6], (word, sort)
            assert sorted(found[1]) == expected, (word, sort)
        # The same orders as the general query (sort by creation: no walk, whatever the planner does).
        assert sorted(pages(word, MesOrderSort.CREATED)) == expected
