"""Concurrent saves stored together: each command still gets its own outcome."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from uuid import uuid4

import pytest
from eventsourcing.persistence import IntegrityError, Recording

from backbone.database import eventsourcing_env
from orders_core.application import OrdersApplication
from orders_core.event_store import GroupedSaves
from orders_core.order import Order
from orders_core.outcomes import Accepted
from tests.orders import OWNER, initiate_command


@pytest.fixture
def app(database: str) -> Iterator[OrdersApplication]:
    """The application as every process wires it."""
    application = OrdersApplication(env=eventsourcing_env(database, pool_size=8))
    yield application
    application.close()


def test_concurrent_creates_are_each_stored_once_with_their_own_position(app: OrdersApplication) -> None:
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda _: app.initiate(initiate_command(), OWNER), range(200)))
    created = [r for r in results if isinstance(r, Accepted)]
    positions = [r.position for r in created]
    assert len(created) == 200 and len(set(positions)) == 200
    for result in created:
        stored = app.order(result.value.id)
        assert stored is not None and stored.number == result.value.number


def test_a_conflict_in_a_group_fails_only_its_own_save(app: OrdersApplication) -> None:
    first, existing, *others = [new_order(i) for i in range(5)]
    duplicate = existing.collect_events()
    app.save(*duplicate)  # stored: saving its creation again must fail
    started, release = threading.Event(), threading.Event()
    groups: list[int] = []

    def save_slowly(*events: Any) -> list[Recording[Any]]:
        groups.append(len(events))
        started.set()
        release.wait(5)  # holds the first group open, so the next saves queue up as one group
        return app.save(*events)

    saves = GroupedSaves(save_slowly)
    with ThreadPoolExecutor(5) as pool:
        leader = pool.submit(saves.save, first.collect_events())
        started.wait(5)
        conflicting = pool.submit(saves.save, duplicate)
        fine = [pool.submit(saves.save, order.collect_events()) for order in others]
        deadline = time.monotonic() + 5
        while len(saves._queue) < 4 and time.monotonic() < deadline:  # all four wait behind the first
            time.sleep(0.01)
        release.set()
        assert len(leader.result()) == 1
        with pytest.raises(IntegrityError):
            conflicting.result()
        assert [len(f.result()) for f in fine] == [1, 1, 1]
    assert groups == [1, 4, 1, 1, 1, 1]  # the group of four failed, and each was saved again alone
    assert all(app.order(order.id) is not None for order in [first, *others])


def new_order(i: int) -> Order:
    order = Order.initiate(uuid4(), f"T-{i}", initiate_command(), OWNER)
    assert isinstance(order, Order)
    return order
