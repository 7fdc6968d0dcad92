"""The audit's pure part: folding an order's events by the aggregate, and comparing views against it."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from orders_core.audit import (
    Discrepancy,
    OrderTruth,
    Problem,
    ViewRow,
    compare_pricing,
    compare_view,
    fold_order,
    group_by_order,
)
from orders_core.commands import (
    AttachModel,
    CancelOrder,
    RecordQuote,
    RejectModel,
    RepriceOrder,
    SubmitOrder,
)
from orders_core.order import Order
from tests.orders import EVERYONE, OWNER, PRICING, SELLER, model_file, new_order, quote_for, valid_command


def positioned(events: list[Order.Event], start: int = 1) -> list[tuple[int, Order.Event]]:
    return [(start + i, e) for i, e in enumerate(events)]


def run(order: Order, *steps: tuple[object, object]) -> list[Order.Event]:
    for command, actor in steps:
        assert order.execute(command, actor) is None  # type: ignore[arg-type]
    return list(order.collect_events())  # type: ignore[arg-type]


def test_a_submission_waits_until_pricing_answers_it() -> None:
    order = new_order()
    model = model_file()
    events = run(order, (AttachModel(model), OWNER), (SubmitOrder(), OWNER))
    waiting = fold_order(positioned(events))
    assert isinstance(waiting, OrderTruth)
    assert waiting.waiting_since == events[-1].timestamp
    assert (waiting.version, waiting.status, waiting.position) == (3, "SUBMITTED", 3)
    events += run(order, (RecordQuote(quote_for(model.sha256)), PRICING))
    answered = fold_order(positioned(events))
    assert isinstance(answered, OrderTruth)
    assert (answered.waiting_since, answered.duplicate_answers, answered.status) == (
        None,
        0,
        "PRICE_CALCULATED",
    )


def test_a_re_priced_order_waits_for_pricing_again() -> None:
    order = new_order()
    model = model_file()
    events = run(
        order,
        (AttachModel(model), OWNER),
        (SubmitOrder(), OWNER),
        (RecordQuote(quote_for(model.sha256)), PRICING),
        (RepriceOrder(), SELLER),
    )
    truth = fold_order(positioned(events))
    assert isinstance(truth, OrderTruth) and truth.waiting_since == events[-1].timestamp
    events += run(order, (RecordQuote(quote_for(model.sha256), submission=order.version), PRICING))
    answered = fold_order(positioned(events))
    assert isinstance(answered, OrderTruth)
    assert (answered.waiting_since, answered.duplicate_answers) == (None, 0)


def test_a_rejected_then_resubmitted_order_waits_again_and_a_cancel_withdraws_the_submission() -> None:
    order = new_order()
    first, second = model_file(b"one"), model_file(b"two")
    events = run(
        order,
        (AttachModel(first), OWNER),
        (SubmitOrder(), OWNER),
        (RejectModel(first.sha256, "not watertight"), PRICING),
        (AttachModel(second), OWNER),
        (SubmitOrder(), OWNER),
    )
    truth = fold_order(positioned(events))
    assert isinstance(truth, OrderTruth) and truth.waiting_since == events[-1].timestamp
    events += run(order, (CancelOrder("changed my mind"), SELLER))
    cancelled = fold_order(positioned(events))
    assert isinstance(cancelled, OrderTruth)
    assert (cancelled.waiting_since, cancelled.status) == (None, "CANCELLED")


def test_an_answer_applied_twice_is_a_duplicate() -> None:
    order = new_order()
    model = model_file()
    events = run(
        order,
        (AttachModel(model), OWNER),
        (SubmitOrder(), OWNER),
        (RecordQuote(quote_for(model.sha256)), PRICING),
    )
    again = dataclasses.replace(events[-1], originator_version=events[-1].originator_version + 1)
    truth = fold_order(positioned([*events, again]))
    assert isinstance(truth, OrderTruth) and truth.duplicate_answers == 1
    found = compare_pricing([truth], again.timestamp, grace_s=0)
    assert [d.problem for d in found] == [Problem.DUPLICATE_ANSWER]


def test_a_missing_version_is_a_broken_history() -> None:
    order = new_order()
    model = model_file()
    events = run(order, (AttachModel(model), OWNER), (SubmitOrder(), OWNER))
    broken = fold_order(positioned([events[0], events[2]]))
    assert isinstance(broken, Discrepancy) and broken.problem is Problem.BROKEN_HISTORY


def test_unanswered_submissions_are_reported_only_after_the_grace_period() -> None:
    order = new_order()
    events = run(order, (AttachModel(model_file()), OWNER), (SubmitOrder(), OWNER))
    truth = fold_order(positioned(events))
    assert isinstance(truth, OrderTruth) and truth.waiting_since is not None
    assert compare_pricing([truth], truth.waiting_since + timedelta(seconds=59), grace_s=60) == []
    late = compare_pricing([truth], truth.waiting_since + timedelta(seconds=61), grace_s=60)
    assert [(d.problem, d.order_id) for d in late] == [(Problem.UNANSWERED, truth.order_id)]


def truth(order_id: str, version: int = 3, status: str = "SUBMITTED", position: int = 10) -> OrderTruth:
    return OrderTruth(order_id, version, status, "cust-1", position, None, 0)


def test_compare_view_names_every_kind_of_difference() -> None:
    truths = {t.order_id: t for t in (truth("a"), truth("b"), truth("c"), truth("d"), truth("e"))}
    rows = [
        ViewRow("a", "SUBMITTED", 3, 10),  # right
        ViewRow("b", "SUBMITTED", 2, 8),  # an event never reached the view
        ViewRow("c", "CANCELLED", 3, 10),  # right version, wrong status: a corrupted row
        ViewRow("d", "PRICE_CALCULATED", 4, 12),  # moved on after the audited position: not compared
        ViewRow("x", "SUBMITTED", 1, 5),  # not in the store
        ViewRow("y", "SUBMITTED", 1, 12),  # created after the audited position: not compared
    ]
    found = {(d.problem, d.order_id) for d in compare_view("mes", truths, rows, audited=10, reached=10)}
    assert found == {
        (Problem.WRONG_VERSION, "b"),
        (Problem.WRONG_STATUS, "c"),
        (Problem.UNKNOWN_IN_VIEW, "x"),
        (Problem.MISSING_IN_VIEW, "e"),
    }


def test_orders_beyond_the_views_position_are_lag_not_loss() -> None:
    truths = {
        "a": truth("a", position=10),
        "b": truth("b", version=4, position=15),
        "c": truth("c", position=14),
    }
    rows = [ViewRow("a", "SUBMITTED", 3, 10), ViewRow("b", "SUBMITTED", 3, 10)]
    assert compare_view("shop", truths, rows, audited=15, reached=12) == []
    caught_up = compare_view("shop", truths, rows, audited=15, reached=15)
    assert {(d.problem, d.order_id) for d in caught_up} == {
        (Problem.WRONG_VERSION, "b"),
        (Problem.MISSING_IN_VIEW, "c"),
    }


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=12), min_size=1, max_size=6), st.randoms())
def test_random_orders_fold_to_the_aggregates_state(walks: list[int], rng: object) -> None:
    rows = []
    expected = {}
    position = 0
    for steps in walks:
        order = new_order()
        for _ in range(steps):
            candidates = [(a, c) for a in EVERYONE for c in order.allowed_for(a)]
            if not candidates:
                break
            actor, name = rng.choice(candidates)  # type: ignore[attr-defined]
            assert order.execute(valid_command(order, name), actor) is None
        expected[str(order.id)] = (order.version, order.status.value)
        for event in order.collect_events():
            position += 1
            rows.append((order.id, position, event))
    rows.sort(key=lambda r: (r[0], r[2].originator_version))
    folded = [fold_order(events) for events in group_by_order(rows)]
    assert all(isinstance(t, OrderTruth) for t in folded)
    got = {t.order_id: (t.version, t.status) for t in folded if isinstance(t, OrderTruth)}
    assert got == expected
    assert (
        compare_view(
            "mes",
            {t.order_id: t for t in folded if isinstance(t, OrderTruth)},
            [ViewRow(k, s, v, 0) for k, (v, s) in expected.items()],
            audited=position,
            reached=position,
        )
        == []
    )
