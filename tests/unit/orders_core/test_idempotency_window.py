"""Idempotency-Keys are honoured for a window: a retry within it gets the first order, after it a new one."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid5

import pytest

from orders_core.actors import Actor
from orders_core.application import OrdersApplication
from orders_core.idempotency import ORDER_KEYS, key_order_id, newest_generation
from orders_core.lifecycle import Role
from orders_core.order import Order
from orders_core.outcomes import Accepted, Refusal, Refused
from tests.orders import OWNER, PARTNER, initiate_command


class Clock:
    """The wall clock moved on by `ahead`: the orders keep the time they were really created at."""

    def __init__(self) -> None:
        self.ahead = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.ahead


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(clock: Clock) -> Iterator[OrdersApplication]:
    """The application on the in-memory event store, with the default 24-hour window."""
    application = OrdersApplication(clock=clock)
    yield application
    application.close()


def created(result: Accepted[Order] | Refusal) -> Accepted[Order]:
    assert isinstance(result, Accepted), result
    return result


def test_a_retry_within_the_window_returns_the_first_order(app: OrdersApplication, clock: Clock) -> None:
    command = initiate_command(PARTNER, idempotency_key="po-1")
    first = created(app.initiate(command, PARTNER))
    clock.ahead = timedelta(hours=23, minutes=59)
    again = created(app.initiate(command, PARTNER))
    assert again.replayed and not first.replayed
    assert again.value.id == first.value.id


def test_after_the_window_the_same_key_starts_a_new_order(app: OrdersApplication, clock: Clock) -> None:
    command = initiate_command(PARTNER, idempotency_key="po-2")
    first = created(app.initiate(command, PARTNER)).value.id
    clock.ahead = timedelta(hours=24, seconds=1)
    second = created(app.initiate(command, PARTNER))
    assert not second.replayed and second.value.id != first
    # The new order has a window of its own: a retry an hour after it (the clock counts from when the test
    # really created both orders) gets it back, not the first.
    clock.ahead = timedelta(hours=1)
    retry = created(app.initiate(command, PARTNER))
    assert retry.replayed and retry.value.id == second.value.id


def test_every_window_gets_its_own_order(app: OrdersApplication, clock: Clock) -> None:
    command = initiate_command(OWNER, idempotency_key="monthly")
    ids = []
    for day in range(5):
        clock.ahead = timedelta(days=day)  # the orders are all really created now: each is a day "older"
        ids.append(created(app.initiate(command, OWNER)).value.id)
    assert len(set(ids)) == 5
    assert ids[0] == uuid5(ORDER_KEYS, f"customer:{OWNER.subject}:monthly")  # the id keys always had


def test_another_body_is_refused_within_the_window_and_accepted_after(
    app: OrdersApplication, clock: Clock
) -> None:
    created(app.initiate(initiate_command(idempotency_key="k"), OWNER))
    clock.ahead = timedelta(hours=1)
    other = app.initiate(initiate_command(idempotency_key="k", quantity=2), OWNER)
    assert isinstance(other, Refusal) and other.code is Refused.IDEMPOTENCY_KEY_REUSED
    clock.ahead = timedelta(hours=25)
    assert not created(app.initiate(initiate_command(idempotency_key="k", quantity=2), OWNER)).replayed


def test_the_window_is_configurable(clock: Clock) -> None:
    app = OrdersApplication(idempotency_window=timedelta(minutes=30), clock=clock)
    command = initiate_command(idempotency_key="short")
    first = created(app.initiate(command, OWNER)).value.id
    clock.ahead = timedelta(minutes=29)
    assert created(app.initiate(command, OWNER)).value.id == first
    clock.ahead = timedelta(minutes=31)
    assert created(app.initiate(command, OWNER)).value.id != first
    app.close()


def test_keys_are_per_caller(app: OrdersApplication) -> None:
    one = created(app.initiate(initiate_command(OWNER, idempotency_key="same"), OWNER))
    two = created(app.initiate(initiate_command(PARTNER, idempotency_key="same"), PARTNER))
    assert not two.replayed and one.value.id != two.value.id


def counted_reads(app: OrdersApplication, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every aggregate the application reads from the store from now on."""
    reads: list[object] = []
    get = app.repository.get

    def counting_get(aggregate_id: object, *args: Any, **kwargs: Any) -> Any:
        reads.append(aggregate_id)
        return get(aggregate_id, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(app.repository, "get", counting_get)
    return reads


def test_keyless_creates_read_nothing(app: OrdersApplication, monkeypatch: pytest.MonkeyPatch) -> None:
    created(app.initiate(initiate_command(), OWNER))  # the catalog is read once, on first use
    reads = counted_reads(app, monkeypatch)
    created(app.initiate(initiate_command(), OWNER))
    assert reads == []


def test_a_new_key_costs_one_read_and_a_retry_two(
    app: OrdersApplication, monkeypatch: pytest.MonkeyPatch
) -> None:
    created(app.initiate(initiate_command(), OWNER))
    reads = counted_reads(app, monkeypatch)
    created(app.initiate(initiate_command(idempotency_key="counted"), OWNER))
    assert len(reads) == 1
    created(app.initiate(initiate_command(idempotency_key="counted"), OWNER))
    assert len(reads) == 3


def test_ids_of_subjects_with_colons_do_not_meet() -> None:
    one = key_order_id(Actor(Role.PARTNER, "a:b"), "c", 0)
    two = key_order_id(Actor(Role.PARTNER, "a"), "b:c", 0)
    assert one != two


def test_generations_have_distinct_ids() -> None:
    ids = {key_order_id(PARTNER, "k", g) for g in range(100)}
    assert len(ids) == 100


@pytest.mark.parametrize("existing", [0, 1, 2, 3, 5, 8, 31, 32, 33, 100, 365])
def test_newest_generation_finds_the_last_in_few_probes(existing: int) -> None:
    probed: list[int] = []

    def probe(generation: int) -> str | None:
        probed.append(generation)
        return f"order {generation}" if generation < existing else None

    found = newest_generation(probe)
    assert found == ((existing - 1, f"order {existing - 1}") if existing else None)
    assert len(probed) <= 2 * math.ceil(math.log2(existing + 1)) + 1
