"""The Order aggregate's rules, one behaviour per test (pure: no database)."""

from __future__ import annotations

from datetime import timedelta

from orders_core.commands import (
    ApproveManufacturing,
    AttachModel,
    CancelOrder,
    CloseOrder,
    CompleteManufacturing,
    RecordQuote,
    RejectModel,
    ShipOrder,
    StartManufacturing,
    StartPackaging,
    SubmitOrder,
)
from orders_core.lifecycle import Status
from orders_core.order import Order, initiation_refusal
from orders_core.outcomes import Refusal, Refused
from tests.orders import (
    ADMIN,
    OPERATOR,
    OTHER_OPERATOR,
    OWNER,
    PRICING,
    SELLER,
    STRANGER,
    initiate_command,
    model_file,
    new_order,
    quote_for,
)


def accept(order: Order, command: object, actor: object) -> None:
    refusal = order.execute(command, actor)  # type: ignore[arg-type]
    assert refusal is None, refusal


def approved_order() -> Order:
    order = new_order()
    model = model_file()
    accept(order, AttachModel(model), OWNER)
    accept(order, SubmitOrder(), OWNER)
    accept(order, RecordQuote(quote_for(model.sha256)), PRICING)
    accept(order, ApproveManufacturing(), SELLER)
    return order


def test_a_new_order_is_initiated_with_its_number_and_owner() -> None:
    order = new_order()
    assert order.status is Status.INITIATED
    assert (order.number, order.owner_id, order.channel) == ("A-100001", "cust-1", "shop")


def test_a_customer_cannot_initiate_an_order_for_someone_else() -> None:
    refusal = initiation_refusal(initiate_command(STRANGER), OWNER)
    assert isinstance(refusal, Refusal) and refusal.code is Refused.FORBIDDEN


def test_an_operator_cannot_initiate_orders() -> None:
    refusal = initiation_refusal(initiate_command(), OPERATOR)
    assert isinstance(refusal, Refusal) and refusal.code is Refused.FORBIDDEN


def test_submission_promises_delivery_21_days_later() -> None:
    order = new_order()
    accept(order, AttachModel(model_file()), OWNER)
    accept(order, SubmitOrder(), OWNER)
    submitted = order.entered_at[Status.SUBMITTED.value]
    assert order.promised_date == submitted.date() + timedelta(days=21)


def test_approving_before_a_price_is_refused_with_status_and_allowed_commands() -> None:
    order = new_order()
    refusal = order.execute(ApproveManufacturing(), SELLER)
    assert refusal is not None and refusal.code is Refused.NOT_ALLOWED
    assert refusal.status is Status.INITIATED
    assert set(refusal.allowed) == {"AttachModel", "CancelOrder"}


def test_a_refused_command_records_nothing() -> None:
    order = new_order()
    order.collect_events()
    before = order.version
    assert order.execute(SubmitOrder(), OWNER) is not None
    assert order.collect_events() == [] and order.version == before


def test_a_customer_cannot_approve_their_own_order() -> None:
    order = approved_order()
    refusal = order.execute(ApproveManufacturing(), OWNER)
    assert refusal is not None and refusal.code is Refused.FORBIDDEN


def test_a_stranger_cannot_touch_someone_elses_order() -> None:
    refusal = new_order().execute(AttachModel(model_file()), STRANGER)
    assert refusal is not None and refusal.code is Refused.FORBIDDEN


def test_second_operator_cannot_take_a_taken_order_and_learns_who_took_it() -> None:
    order = approved_order()
    accept(order, StartManufacturing(), OPERATOR)
    refusal = order.execute(StartManufacturing(), OTHER_OPERATOR)
    assert refusal is not None and refusal.code is Refused.NOT_ALLOWED
    assert refusal.details["taken_by"] == "op-1"
    assert "op-1" in refusal.reason


def test_only_the_operator_who_took_an_order_completes_it() -> None:
    order = approved_order()
    accept(order, StartManufacturing(), OPERATOR)
    refusal = order.execute(CompleteManufacturing(), OTHER_OPERATOR)
    assert refusal is not None and refusal.code is Refused.FORBIDDEN
    accept(order, CompleteManufacturing(), OPERATOR)


def test_the_owner_cannot_cancel_after_approval_but_a_seller_can() -> None:
    order = approved_order()
    refusal = order.execute(CancelOrder("changed my mind"), OWNER)
    assert refusal is not None and refusal.code is Refused.FORBIDDEN
    accept(order, CancelOrder("customer called"), SELLER)
    assert order.status is Status.CANCELLED and order.cancellation_reason == "customer called"


def test_nobody_cancels_once_manufacturing_started() -> None:
    order = approved_order()
    accept(order, StartManufacturing(), OPERATOR)
    for actor in (OWNER, SELLER, ADMIN):
        refusal = order.execute(CancelOrder("too late"), actor)
        assert refusal is not None and refusal.code in (Refused.NOT_ALLOWED, Refused.FORBIDDEN)


def test_a_quote_for_a_replaced_model_is_refused() -> None:
    order = new_order()
    accept(order, AttachModel(model_file(b"first")), OWNER)
    accept(order, SubmitOrder(), OWNER)
    refusal = order.execute(RecordQuote(quote_for(model_file(b"second").sha256)), PRICING)
    assert refusal is not None and refusal.code is Refused.NOT_ALLOWED


def test_a_quote_whose_lines_do_not_add_up_is_refused() -> None:
    order = new_order()
    model = model_file()
    accept(order, AttachModel(model), OWNER)
    accept(order, SubmitOrder(), OWNER)
    bad = quote_for(model.sha256)
    bad = type(bad)(**{**{f: getattr(bad, f) for f in bad.__struct_fields__}, "total_minor": 1})
    refusal = order.execute(RecordQuote(bad), PRICING)
    assert refusal is not None and refusal.code is Refused.INVALID


def test_the_quote_fills_in_the_models_triangle_count() -> None:
    order = approved_order()
    assert order.model is not None and order.model.triangle_count == 12


def test_a_rejected_order_takes_a_new_model_and_forgets_the_reason() -> None:
    order = new_order()
    model = model_file()
    accept(order, AttachModel(model), OWNER)
    accept(order, SubmitOrder(), OWNER)
    accept(order, RejectModel(model.sha256, "the model is not watertight"), PRICING)
    assert order.status is Status.REJECTED and order.rejection_reason == "the model is not watertight"
    accept(order, AttachModel(model_file(b"fixed")), OWNER)
    assert order.status is Status.FILE_UPLOADED and order.rejection_reason is None


def test_shipping_needs_a_carrier_and_tracking_number() -> None:
    order = approved_order()
    accept(order, StartManufacturing(), OPERATOR)
    accept(order, CompleteManufacturing(), OPERATOR)
    accept(order, StartPackaging(), OTHER_OPERATOR)
    refusal = order.execute(ShipOrder(" ", "123"), OPERATOR)
    assert refusal is not None and refusal.code is Refused.INVALID
    accept(order, ShipOrder("DHL", "JD0123"), OPERATOR)
    accept(order, CloseOrder(), SELLER)
    assert (order.status, order.carrier, order.tracking_number) == (Status.CLOSED, "DHL", "JD0123")


def test_an_order_is_stuck_once_past_its_status_limit() -> None:
    order = approved_order()
    entered = order.entered_at[Status.MANUFACTURING_APPROVED.value]
    assert not order.is_stuck(entered + timedelta(hours=23))
    assert order.is_stuck(entered + timedelta(days=2))


def test_an_order_is_overdue_after_its_promised_date_until_shipped() -> None:
    order = approved_order()
    assert order.promised_date is not None
    after = order.entered_at[Status.SUBMITTED.value] + timedelta(days=22)
    assert order.is_overdue(after)
    assert not order.is_overdue(after - timedelta(days=2))


def test_each_status_change_is_time_stamped() -> None:
    order = approved_order()
    stamps = [
        order.entered_at[s.value]
        for s in (
            Status.INITIATED,
            Status.FILE_UPLOADED,
            Status.SUBMITTED,
            Status.PRICE_CALCULATED,
            Status.MANUFACTURING_APPROVED,
        )
    ]
    assert stamps == sorted(stamps)
