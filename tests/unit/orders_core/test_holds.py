"""Holds with reasons: an order put on hold keeps its status, takes only a release or a cancellation, and
says why and since when (pure)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from orders_core.commands import (
    ApproveManufacturing,
    AttachModel,
    HoldOrder,
    RecordQuote,
    ReleaseOrder,
    StartManufacturing,
    SubmitOrder,
)
from orders_core.lifecycle import HOLDABLE, WHILE_HELD, Status
from orders_core.order import Order
from orders_core.outcomes import Refused
from tests.orders import (
    EVERYONE,
    OPERATOR,
    OWNER,
    PRICING,
    SELLER,
    model_file,
    new_order,
    quote_for,
    valid_command,
)


def walked_to(status: Status) -> Order:
    order = new_order()
    model = model_file()
    steps = [
        (AttachModel(model), OWNER),
        (SubmitOrder(), OWNER),
        (RecordQuote(quote_for(model.sha256)), PRICING),
        (ApproveManufacturing(), SELLER),
        (StartManufacturing(), OPERATOR),
    ]
    for command, actor in steps:
        if order.status is status:
            break
        assert order.execute(command, actor) is None  # type: ignore[arg-type]
    assert order.status is status
    order.collect_events()
    return order


def test_an_approved_order_on_hold_keeps_its_status_and_says_why_and_since_when() -> None:
    order = walked_to(Status.MANUFACTURING_APPROVED)
    approved_at = order.entered_at[Status.MANUFACTURING_APPROVED.value]
    assert order.execute(HoldOrder("  awaiting material: 2 mm sapphires "), OPERATOR) is None
    (held,) = order.collect_events()
    assert order.status is Status.MANUFACTURING_APPROVED
    assert (order.held_since, order.hold_reason) == (held.timestamp, "awaiting material: 2 mm sapphires")
    assert order.entered_at[Status.MANUFACTURING_APPROVED.value] == approved_at
    assert set(order.allowed_for(OPERATOR)) <= WHILE_HELD and "ReleaseOrder" in order.allowed_for(OPERATOR)

    refusal = order.execute(StartManufacturing(), OPERATOR)
    assert refusal is not None and refusal.code is Refused.NOT_ALLOWED
    assert "on hold since" in refusal.reason and "awaiting material" in refusal.reason
    assert refusal.details["hold_reason"] == "awaiting material: 2 mm sapphires"
    assert refusal.allowed == order.allowed_for(OPERATOR)

    assert order.execute(ReleaseOrder(), SELLER) is None
    assert (order.held_since, order.hold_reason) == (None, None)
    assert order.execute(StartManufacturing(), OPERATOR) is None


def test_a_hold_needs_a_reason_of_at_most_200_characters() -> None:
    order = walked_to(Status.PRICE_CALCULATED)
    for reason, says in (("   ", "needs a reason"), ("x" * 201, "at most 200")):
        refusal = order.execute(HoldOrder(reason), SELLER)
        assert refusal is not None and refusal.code is Refused.INVALID and says in refusal.reason
    assert order.execute(HoldOrder("x" * 200), SELLER) is None


def test_a_hold_outside_the_holdable_statuses_is_refused_with_the_allowed_commands() -> None:
    order = walked_to(Status.SUBMITTED)
    refusal = order.execute(HoldOrder("customer asked to wait"), SELLER)
    assert refusal is not None and refusal.code is Refused.NOT_ALLOWED
    assert refusal.status is Status.SUBMITTED and refusal.allowed == order.allowed_for(SELLER)


def test_only_operators_and_sellers_hold_and_release_and_a_second_hold_is_refused() -> None:
    order = walked_to(Status.MANUFACTURING_STARTED)
    refused = order.execute(HoldOrder("model question"), OWNER)
    assert refused is not None and refused.code is Refused.FORBIDDEN
    assert order.execute(HoldOrder("model question"), OPERATOR) is None
    again = order.execute(HoldOrder("another"), SELLER)
    assert again is not None and again.code is Refused.NOT_ALLOWED and "already" not in again.reason
    assert "on hold since" in again.reason
    assert order.is_stuck(order.held_since.replace(year=2099)) is False  # type: ignore[union-attr]


def test_releasing_an_order_not_on_hold_is_refused() -> None:
    order = walked_to(Status.MANUFACTURING_APPROVED)
    refusal = order.execute(ReleaseOrder(), OPERATOR)
    assert refusal is not None and refusal.code is Refused.NOT_ALLOWED and "not on hold" in refusal.reason


@settings(max_examples=150, deadline=None)
@given(
    start=st.sampled_from(sorted(HOLDABLE)),
    steps=st.lists(st.tuples(st.integers(0, 10**6), st.booleans()), max_size=25),
)
def test_any_walk_through_holds_keeps_their_rules(start: Status, steps: list[tuple[int, bool]]) -> None:
    order = walked_to(start)
    for choice, hold_first in steps:
        if hold_first and order.status in HOLDABLE and order.held_since is None:
            assert order.execute(HoldOrder(f"hold {choice}"), SELLER) is None
        candidates = [(a, c) for a in EVERYONE for c in order.allowed_for(a)]
        if not candidates:
            break
        actor, name = candidates[choice % len(candidates)]
        held = order.held_since is not None
        status = order.status
        assert order.execute(valid_command(order, name), actor) is None
        if held:  # on hold, only a release or a cancellation went through
            assert name in WHILE_HELD
        if name in ("HoldOrder", "ReleaseOrder"):
            assert order.status is status
        if order.held_since is not None:
            assert order.status in HOLDABLE
            assert all(set(order.allowed_for(a)) <= WHILE_HELD for a in EVERYONE)
