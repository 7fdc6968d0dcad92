"""A poison event stalls one order, not the view: narrowed down, parked with its order's later events, retried
once a fix is deployed; transient faults and faults of the whole view are retried, never parked."""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import StoredEvent
from prometheus_client import REGISTRY
from psycopg.rows import dict_row

from backbone.audit import audit
from backbone.database import eventsourcing_env
from backbone.wiring import projection_runner
from orders_core.application import OrdersApplication
from orders_core.audit import Problem
from orders_core.contracts import Change
from orders_core.order import Order
from projectors.faults import NotYetPoison
from projectors.health import projection_health
from projectors.parked import parked_aggregates, request_retry
from projectors.replay import replay
from projectors.runner import ProjectorRunner
from read_models import shop
from tests.integration.test_projections import busy_order
from tests.orders import OPERATOR, SELLER, valid_command


@pytest.fixture
def app(database: str) -> Iterator[OrdersApplication]:
    application = OrdersApplication(env=eventsourcing_env(database, pool_size=4))
    yield application
    application.close()


class FailsFor:
    """A projection with a bug that one event of one order meets (its event at `version`); the order's later
    events would apply, but must not be applied before it."""

    def __init__(self, inner: Any, order_id: uuid.UUID, version: int = 1) -> None:
        self.inner, self.name = inner, inner.name
        self.order_id, self.version = str(order_id), version

    def apply(self, cursor: Any, schema: str, changes: Sequence[Change]) -> None:
        for change in changes:
            if change.aggregate_id == self.order_id and change.version == self.version:
                raise ValueError(f"cannot fold {change.event.name}")
        self.inner.apply(cursor, schema, changes)

    def forget(self) -> None:
        self.inner.forget()

    def mark_parked(self, cursor: Any, schema: str, aggregate_id: str, reason: str | None) -> None:
        self.inner.mark_parked(cursor, schema, aggregate_id, reason)


def runner(name: str, database: str, batch_size: int = 1000) -> ProjectorRunner:
    return projection_runner(name, database, batch_size=batch_size)


def rows(database: str, schema: str) -> dict[str, dict[str, Any]]:
    with psycopg.connect(database) as conn:
        found = conn.execute(f"SELECT to_jsonb(o) FROM {schema}.orders AS o").fetchall()
    return {r[0]["order_id"]: r[0] for r in found}


def parked(database: str, schema: str) -> dict[str, Any]:
    with psycopg.connect(database) as conn:
        return {p.aggregate_id: p for p in parked_aggregates(conn, schema)}


def orders_with(app: OrdersApplication, n: int, seed: int) -> list[Order]:
    rng = random.Random(seed)
    return [busy_order(app, rng.randint(2, 8), rng) for _ in range(n)]


def assert_shows(view: dict[str, dict[str, Any]], order: Order) -> None:
    assert (view[str(order.id)]["status"], view[str(order.id)]["version"]) == (
        order.status.value,
        order.version,
    )


@pytest.mark.parametrize("name", ["mes", "shop"])
def test_a_poison_event_parks_its_order_and_every_other_order_flows(
    app: OrdersApplication, database: str, name: str
) -> None:
    before = orders_with(app, 6, seed=1)
    poisoned = busy_order(app, 5, random.Random(2))
    after = orders_with(app, 6, seed=3)
    projection = runner(name, database)
    projection.projection = FailsFor(projection.projection, poisoned.id, version=3)

    assert projection.catch_up() == app.position()

    view = rows(database, name)
    for order in before + after:
        assert_shows(view, order)
        assert view[str(order.id)]["parked_since"] is None
    stale = view[str(poisoned.id)]
    assert stale["version"] == 2 and stale["parked_since"] is not None
    assert "cannot fold" in stale["parked_reason"]
    held = parked(database, name)[str(poisoned.id)]
    assert held.events == poisoned.version - 2 and "cannot fold" in held.error
    if name == "shop":  # customers are told in words, not shown the error
        with psycopg.connect(database, row_factory=dict_row) as conn:
            shown = shop.order(conn, poisoned.id)
        assert shown is not None and shown["parked_reason"] == shop.STALE
    history = app.history(poisoned.id)
    assert held.event_type == type(history[2]).__name__


def test_later_events_of_a_parked_order_wait_behind_it_and_a_retry_applies_them_in_order(
    app: OrdersApplication, database: str
) -> None:
    poisoned = busy_order(app, 1, random.Random(5))
    others = orders_with(app, 3, seed=6)
    mes = runner("mes", database)
    mes.projection = FailsFor(mes.projection, poisoned.id, version=2)
    mes.catch_up()
    assert parked(database, "mes")[str(poisoned.id)].events == 1
    for name in ("ApproveManufacturing", "StartManufacturing"):
        order = app.order(poisoned.id)
        assert order is not None
        actor = SELLER if name == "ApproveManufacturing" else OPERATOR
        if name in order.allowed_for(actor):
            app.execute(poisoned.id, valid_command(order, name), actor)
    app.execute(poisoned.id, valid_command(accepted_order(app, poisoned.id), "CancelOrder"), SELLER)
    more = orders_with(app, 2, seed=7)
    assert mes.catch_up() == app.position()
    latest = accepted_order(app, poisoned.id)
    assert parked(database, "mes")[str(poisoned.id)].events == latest.version - 1
    assert rows(database, "mes")[str(poisoned.id)]["version"] == 1

    with psycopg.connect(database) as conn:
        assert request_retry(conn, "mes", str(poisoned.id)) == [str(poisoned.id)]
    mes.projection = mes.projection.inner  # the fix is deployed
    mes.retry_requested()

    view = rows(database, "mes")
    assert_shows(view, latest)
    assert view[str(poisoned.id)]["parked_since"] is None and view[str(poisoned.id)]["parked_reason"] is None
    assert parked(database, "mes") == {}
    for order in others + more:
        assert_shows(view, order)
    # The stays and counts are those of a view that never parked anything.
    fresh = runner("mes", database)
    with psycopg.connect(database) as conn:
        counts = dict(conn.execute("SELECT status, orders FROM mes.status_counts").fetchall())
        real = dict(conn.execute("SELECT status, count(*) FROM mes.orders GROUP BY status").fetchall())
    assert counts == real
    fresh.close()


def accepted_order(app: OrdersApplication, order_id: uuid.UUID) -> Order:
    order = app.order(order_id)
    assert order is not None
    return order


def test_a_retry_that_still_fails_keeps_the_order_parked_and_says_why(
    app: OrdersApplication, database: str
) -> None:
    poisoned = busy_order(app, 3, random.Random(8))
    orders_with(app, 2, seed=9)
    shop = runner("shop", database)
    shop.projection = FailsFor(shop.projection, poisoned.id, version=2)
    shop.catch_up()
    with psycopg.connect(database) as conn:
        request_retry(conn, "shop")
    shop.retry_requested()  # the bug is still there
    still = parked(database, "shop")[str(poisoned.id)]
    assert still.retried_at is not None and not still.retry_requested
    assert still.error.startswith("still cannot be applied") and still.events == poisoned.version - 1


def test_a_stored_event_the_views_cannot_read_is_parked(app: OrdersApplication, database: str) -> None:
    """An event the store accepted but the fold cannot read (a field missing: written by a buggy or a
    newer version of the CRM) parks its order in both views."""
    order = busy_order(app, 0, random.Random(10))
    append_raw(app, order.id, 2, "ManufacturingStarted", {"operator_id": None})
    others = orders_with(app, 3, seed=11)
    for name in ("mes", "shop"):
        assert runner(name, database).catch_up() == app.position()
        held = parked(database, name)[str(order.id)]
        assert held.event_type == "ManufacturingStarted" and "operator_id" in held.error
        view = rows(database, name)
        for other in others:
            assert_shows(view, other)


def append_raw(
    app: OrdersApplication, order_id: uuid.UUID, version: int, kind: str, fields: dict[str, Any]
) -> None:
    """Append an order event as the store would take it, whatever its fields."""
    state = {
        "timestamp": {"_type_": "datetime_iso", "_data_": "2026-12-01T10:00:00+00:00"},
        "originator_topic": "orders_core.order:Order",
        **fields,
    }
    event = StoredEvent(order_id, version, f"orders_core.order:Order.{kind}", json.dumps(state).encode())
    app.recorder.insert_events([event])


def test_events_of_a_type_the_views_do_not_know_are_skipped_and_counted_not_parked(
    app: OrdersApplication, database: str
) -> None:
    order = busy_order(app, 0, random.Random(12))
    append_raw(app, order.id, 2, "EngravingAdded", {"text": "A & B"})
    other = orders_with(app, 2, seed=13)
    skipped = (
        REGISTRY.get_sample_value("backbone_projection_skipped_events_total", {"projection": "mes"}) or 0
    )
    assert runner("mes", database).catch_up() == app.position()
    assert parked(database, "mes") == {}
    assert REGISTRY.get_sample_value("backbone_projection_skipped_events_total", {"projection": "mes"}) == (
        skipped + 1
    )
    view = rows(database, "mes")
    assert view[str(order.id)]["version"] == 1
    for o in other:
        assert_shows(view, o)


class LosesItsConnection:
    """A real transient fault: the projection's own connection is terminated by the server mid-batch."""

    def __init__(self, inner: Any, times: int) -> None:
        self.inner, self.name, self.times = inner, inner.name, times

    def apply(self, cursor: Any, schema: str, changes: Sequence[Change]) -> None:
        self.inner.apply(cursor, schema, changes)
        if self.times:
            self.times -= 1
            cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")

    def forget(self) -> None:
        self.inner.forget()


def test_transient_faults_are_retried_and_never_parked(app: OrdersApplication, database: str) -> None:
    orders = orders_with(app, 4, seed=14)
    mes = runner("mes", database, batch_size=5)
    mes.projection = LosesItsConnection(mes.projection, times=2)
    for _ in range(2):
        with pytest.raises(Exception) as raised:
            mes.catch_up()
        assert "terminat" in str(raised.value).lower() or "connection" in str(raised.value).lower()
        assert parked(database, "mes") == {}
    assert mes.catch_up() == app.position()
    view = rows(database, "mes")
    for order in orders:
        assert_shows(view, order)


class BrokenView:
    """A projection that fails on every event, as after a bad deployment: no single event is to blame."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name = inner, inner.name

    def apply(self, cursor: Any, schema: str, changes: Sequence[Change]) -> None:
        if changes:
            raise KeyError("column missing")

    def forget(self) -> None:
        self.inner.forget()


def test_a_view_that_fails_on_every_event_parks_nothing(app: OrdersApplication, database: str) -> None:
    orders_with(app, 3, seed=15)
    shop = runner("shop", database)
    shop.projection = BrokenView(shop.projection)
    with pytest.raises(NotYetPoison):
        shop.catch_up()
    assert parked(database, "shop") == {} and shop.position() == 0


def test_a_poison_event_with_nothing_after_it_waits_for_proof_before_it_is_parked(
    app: OrdersApplication, database: str
) -> None:
    orders_with(app, 2, seed=16)
    last = busy_order(app, 0, random.Random(17))
    mes = runner("mes", database)
    mes.projection = FailsFor(mes.projection, last.id)
    with pytest.raises(NotYetPoison):
        mes.catch_up()
    assert parked(database, "mes") == {}
    later = orders_with(app, 1, seed=18)
    assert mes.catch_up() == app.position()
    assert list(parked(database, "mes")) == [str(last.id)]
    assert_shows(rows(database, "mes"), later[0])


def test_a_running_projection_with_a_parked_order_keeps_following_and_says_so(
    app: OrdersApplication, database: str
) -> None:
    poisoned = busy_order(app, 2, random.Random(19))
    mes = runner("mes", database, batch_size=7)
    mes.projection = FailsFor(mes.projection, poisoned.id, version=2)
    stop = threading.Event()
    follower = threading.Thread(target=mes.run, args=(stop,))
    follower.start()
    try:
        orders = orders_with(app, 8, seed=20)
        wait_until(lambda: mes.position() == app.position())
        with psycopg.connect(database) as conn:
            health = projection_health(conn, "mes")
        assert health.state == "parked" and health.parked_aggregates == 1 and health.lag_events == 0
        assert health.last_success_at is not None and health.failing_since is None
        wait_until(
            lambda: (
                REGISTRY.get_sample_value("backbone_projection_parked_aggregates", {"projection": "mes"}) == 1
            )
        )
    finally:
        stop.set()
        follower.join(10)
    view = rows(database, "mes")
    for order in orders:
        assert_shows(view, order)


def wait_until(condition: Any, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_audit_lists_parked_orders_and_events_the_aggregate_cannot_read(
    app: OrdersApplication, database: str
) -> None:
    poisoned = busy_order(app, 4, random.Random(21))
    unreadable = busy_order(app, 0, random.Random(22))
    append_raw(app, unreadable.id, 2, "ManufacturingStarted", {"operator_id": None})
    newer = busy_order(app, 0, random.Random(24))
    append_raw(app, newer.id, 2, "EngravingAdded", {"text": "A & B"})  # a kind the views skip
    orders_with(app, 3, seed=23)
    for name in ("mes", "shop"):
        projection = runner(name, database)
        projection.projection = FailsFor(projection.projection, poisoned.id, version=2)
        projection.catch_up()
    with psycopg.connect(database) as conn:
        conn.execute("INSERT INTO relay.tracking VALUES ('orders', %s)", (app.position(),))

    report = audit(database, grace_s=3600, settle_s=0)

    found = {(d.problem, d.where, d.order_id) for d in report.discrepancies}
    assert found == {
        (Problem.PARKED, "mes", str(poisoned.id)),
        (Problem.PARKED, "shop", str(poisoned.id)),
        (Problem.PARKED, "mes", str(unreadable.id)),
        (Problem.PARKED, "shop", str(unreadable.id)),
        (Problem.BROKEN_HISTORY, "store", str(newer.id)),
    }
    details = [d.detail for d in report.discrepancies if d.problem is Problem.PARKED]
    assert all("cannot be applied" in detail for detail in details)


def test_a_replay_parks_what_it_cannot_fold_and_rebuilds_everything_else(
    app: OrdersApplication, database: str
) -> None:
    unreadable = busy_order(app, 1, random.Random(25))
    append_raw(app, unreadable.id, 3, "ManufacturingStarted", {"operator_id": None})
    others = orders_with(app, 5, seed=26)

    reached = replay(
        database, "mes", lambda schema: projection_runner("mes", database, schema), lambda *_: None
    )

    assert reached == app.position()
    assert list(parked(database, "mes")) == [str(unreadable.id)]
    view = rows(database, "mes")
    assert view[str(unreadable.id)]["version"] == 2 and view[str(unreadable.id)]["parked_since"] is not None
    for order in others:
        assert_shows(view, order)
