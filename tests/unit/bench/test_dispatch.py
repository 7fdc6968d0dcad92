"""bench/dispatch.py's pure parts: the working calendar, the policies' choices, common random numbers, and
small simulations where the policies differ as they should."""

from __future__ import annotations

import dataclasses

import pytest
from bench.dispatch import (
    MATERIALS,
    POLICIES,
    ROSTER,
    Operator,
    Order,
    advance_working,
    choose,
    compare,
    figures,
    generate_orders,
    next_work_start,
    shop_orders_a_week,
    simulate,
    winner,
    working_hours_between,
)

from orders_core.catalog import DEFAULT_MATERIALS

MONDAY = 0.0
FRIDAY = 4 * 24.0
SATURDAY = 5 * 24.0
NEXT_MONDAY = 7 * 24.0


def order(
    seq: int, *, approved: float = 7.0, due: float = 21 * 24.0, work: float = 9.0, **kw: object
) -> Order:
    fields: dict[str, object] = {
        "seq": seq,
        "channel": "shop",
        "material": "AU750",
        "quantity": 1,
        "submitted_at": approved,
        "approved_at": approved,
        "due_at": due,
        "work_hours": work,
        "expected_hours": work,
        "counted": True,
    }
    fields.update(kw)
    return Order(**fields)  # type: ignore[arg-type]


def test_working_calendar() -> None:
    assert next_work_start(MONDAY + 7) == MONDAY + 8
    assert next_work_start(MONDAY + 10.5) == MONDAY + 10.5
    assert next_work_start(MONDAY + 17) == 24 + 8  # the shift is over: Tuesday morning
    assert next_work_start(SATURDAY + 12) == NEXT_MONDAY + 8
    assert advance_working(FRIDAY + 16, 2) == NEXT_MONDAY + 9  # work left at 17:00 goes on on Monday
    assert advance_working(MONDAY + 8, 9) == MONDAY + 17  # a job that fills the day ends at 17:00
    assert advance_working(SATURDAY, 1) == NEXT_MONDAY + 9
    assert working_hours_between(MONDAY, NEXT_MONDAY) == 45
    assert working_hours_between(NEXT_MONDAY, MONDAY) == -45


def test_the_materials_are_the_catalogs() -> None:
    assert set(MATERIALS) == {m.code for m in DEFAULT_MATERIALS}


def test_each_policy_picks_its_order() -> None:
    queue = [
        order(0, approved=8, due=20 * 24),  # oldest
        order(1, approved=9, due=10 * 24, work=3),  # earliest promise, little work
        order(2, approved=10, due=10 * 24, work=30),  # same promise, much more work: least slack
        order(3, approved=11, due=21 * 24),  # newest
    ]
    picked = {p: choose(queue, frozenset(MATERIALS), key, now=12).seq for p, key in POLICIES.items()}  # type: ignore[union-attr]
    assert picked == {"newest-first": 3, "fifo": 0, "edd": 1, "least-slack": 2}


def test_an_operator_takes_only_materials_they_handle() -> None:
    queue = [order(0, material="PT950", due=24), order(1, material="AG925", due=30 * 24)]
    silver = frozenset({"AG925"})
    assert choose(queue, silver, POLICIES["edd"], now=8).seq == 1  # type: ignore[union-attr]
    assert choose(queue[:1], silver, POLICIES["edd"], now=8) is None


def test_edd_and_least_slack_keep_the_near_promise_that_newest_first_and_fifo_break() -> None:
    # Monday: one operator, three day-long jobs approved before work; the middle one is promised for Tuesday.
    orders = [
        order(0, approved=6, due=21 * 24),
        order(1, approved=6.5, due=2 * 24),
        order(2, approved=7, due=21 * 24),
    ]
    crew = [Operator("solo", frozenset(MATERIALS))]
    results = {p: figures(simulate(orders, crew, p, cap=60 * 24.0), (0.0, 7 * 24.0), 1) for p in POLICIES}
    assert results["newest-first"].late == results["fifo"].late == pytest.approx(1 / 3)
    assert results["edd"].late == results["least-slack"].late == 0
    assert winner(results) in {"edd", "least-slack"}


def test_common_random_numbers() -> None:
    orders = generate_orders(seed=3, days=10, operators=4, load=0.85)
    assert orders == generate_orders(seed=3, days=10, operators=4, load=0.85)
    assert orders != generate_orders(seed=4, days=10, operators=4, load=0.85)
    crew = list(ROSTER[:4])
    runs = {p: simulate(orders, crew, p, cap=30 * 24.0) for p in POLICIES}
    # every policy sees the very same orders, and a policy run twice does the same thing
    assert all(run.orders == orders for run in runs.values())
    assert simulate(orders, crew, "edd", cap=30 * 24.0) == runs["edd"]
    counted = {f.counted for f in compare(3, 10, crew, 0.85).values()}
    assert len(counted) == 1


def test_generated_orders_look_like_the_assumptions() -> None:
    orders = generate_orders(seed=1, days=30, operators=5, load=0.85)
    partners = [o for o in orders if o.channel == "partner"]
    assert partners and len(partners) < len(orders)
    assert all(o.approved_at >= o.submitted_at and o.due_at > o.approved_at for o in orders)
    # sellers approve in working hours (a delay that ends with the shift ends at 17:00)
    assert all(o.approved_at % 168 < 5 * 24 and 8 <= o.approved_at % 24 <= 17 for o in orders)
    assert {o.material for o in orders} == set(MATERIALS)
    # partners' batches: many orders submitted at the same instant
    assert max(sum(p.submitted_at == q.submitted_at for q in partners) for p in partners) >= 10


def test_a_busy_month_ranks_the_policies() -> None:
    results = compare(seed=1, days=30, operators=list(ROSTER[:5]), load=0.9)
    newest = results["newest-first"]
    assert results["edd"].late <= results["fifo"].late <= newest.late
    assert results["least-slack"].late <= newest.late
    assert newest.wait_max > results["fifo"].wait_max  # newest-first starves its oldest orders
    assert 0.6 < newest.utilisation < 1


def test_shop_rate_follows_the_load() -> None:
    assert shop_orders_a_week(5, 0.9) > shop_orders_a_week(5, 0.85) > 0
    with pytest.raises(ValueError):
        shop_orders_a_week(1, 0.5)


def test_orders_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        order(0).due_at = 0  # type: ignore[misc]
