"""The order-row fold equals the aggregate it mirrors, for any sequence of commands (hypothesis)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from orders_core.application import OrdersApplication
from orders_core.commands import AttachModel, CancelOrder, RecordQuote, RepriceOrder, SubmitOrder
from orders_core.contracts import read_stored_event
from orders_core.lifecycle import Status
from orders_core.order import Order
from projectors.order_rows import NEVER, expected_manufacturing, fold_order
from tests.orders import EVERYONE, OWNER, PRICING, SELLER, model_file, new_order, quote_for, valid_command

MAPPER = OrdersApplication().mapper  # in-memory application: the same transcoder as the real store


def folded(events: list[Order.Event]) -> dict[str, object]:
    row = None
    for position, event in enumerate(events, start=1):
        stored = MAPPER.to_stored_event(event)
        decoded = read_stored_event(stored.topic, stored.state)
        assert decoded is not None
        row = fold_order(row, decoded, str(stored.originator_id), stored.originator_version, position)
    assert row is not None
    return row


def walk(choices: list[int]) -> tuple[Order, list[Order.Event]]:
    """An order moved along by whatever some actor may do at each step, chosen by `choices`."""
    order = new_order()
    events = list(order.collect_events())
    for choice in choices:
        candidates = [(a, c) for a in EVERYONE for c in order.allowed_for(a)]
        if not candidates:
            break
        actor, name = candidates[choice % len(candidates)]
        assert order.execute(valid_command(order, name), actor) is None
        events.extend(order.collect_events())
    return order, events


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 1000), max_size=14))
def test_the_row_mirrors_the_aggregate(choices: list[int]) -> None:
    order, events = walk(choices)
    row = folded(events)
    assert row["order_id"] == str(order.id)
    assert (row["status"], row["version"], row["position"]) == (
        order.status.value,
        order.version,
        len(events),
    )
    for field in (
        "number",
        "owner_id",
        "channel",
        "operator_id",
        "carrier",
        "tracking_number",
        "rejection_reason",
        "cancellation_reason",
        "quantity",
        "material_code",
    ):
        assert row[field] == getattr(order, field), field
    assert row["promised_date"] == (order.promised_date.isoformat() if order.promised_date else None)
    assert row["quote_total_minor"] == (order.quote.total_minor if order.quote else None)
    # Quotes without terms (as valid_command records them) hold from their recording, in both folds.
    valid_until = row["quote_valid_until"]
    assert (datetime.fromisoformat(valid_until) if valid_until else None) == (
        order.quote.valid_until if order.quote else None
    )
    assert (row["quote"] or {}).get("valid_until") == valid_until
    assert row["model_sha256"] == (order.model.sha256 if order.model else None)
    assert row["triangle_count"] == (order.model.triangle_count if order.model else None)
    assert row["status_times"] == {k: v.isoformat() for k, v in order.entered_at.items()}
    assert row["held_since"] == (order.held_since.isoformat() if order.held_since else None)
    assert row["hold_reason"] == order.hold_reason
    assert order.held_since is None or row["stuck_at"] is None
    approved = order.entered_at.get(Status.MANUFACTURING_APPROVED.value)
    assert row["approved_at"] == (approved.isoformat() if approved else NEVER)


def test_stuck_at_is_the_status_limit_after_entering_it() -> None:
    order, events = walk([0])
    row = folded(events)
    entered = order.entered_at[order.status.value]
    assert row["stuck_at"] == (entered + timedelta(days=7)).isoformat()


def test_final_statuses_are_never_stuck() -> None:
    order = new_order()
    assert order.execute(CancelOrder("changed my mind"), OWNER) is None
    row = folded(list(order.collect_events()))
    assert row["status"] == "CANCELLED" and row["stuck_at"] is None and row["promise_open"] is False


def test_the_row_shows_the_quotes_term_and_clears_the_quote_while_it_is_re_priced() -> None:
    order = new_order()
    model = model_file()
    until = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    quote = msgspec.structs.replace(quote_for(model.sha256), valid_until=until, catalog_version=7)
    for command, actor in (
        (AttachModel(model), OWNER),
        (SubmitOrder(), OWNER),
        (RecordQuote(quote), PRICING),
    ):
        assert order.execute(command, actor) is None
    events = list(order.collect_events())
    row = folded(events)
    assert datetime.fromisoformat(row["quote_valid_until"]) == until
    assert row["quote"]["catalog_version"] == 7
    assert order.execute(RepriceOrder(), SELLER) is None
    row = folded(events + list(order.collect_events()))
    assert row["status"] == "SUBMITTED"
    assert (row["quote"], row["quote_total_minor"], row["quote_valid_until"]) == (None, None, None)


def test_a_manufacturing_estimate_is_whole_seconds_and_never_zero() -> None:
    assert expected_manufacturing({"manufacturing_hours": 7.25}) == timedelta(hours=7, minutes=15)
    assert expected_manufacturing({"manufacturing_hours": 1e-9}) == timedelta(seconds=1)
    assert expected_manufacturing({"manufacturing_hours": None}) is None
    assert expected_manufacturing({}) is None
