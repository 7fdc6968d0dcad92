"""Commands decided first on the order as this process saved it: never acted on when another changed it."""

from __future__ import annotations

from orders_core.application import OrdersApplication
from orders_core.commands import AttachModel, CancelOrder, SubmitOrder
from orders_core.lifecycle import Status
from tests.orders import OWNER, accepted, initiate_command, model_file


def test_a_command_refused_on_an_outdated_saved_order_is_decided_on_the_stored_one(
    replicas: tuple[OrdersApplication, OrdersApplication],
) -> None:
    first, second = replicas
    order = accepted(first.initiate(initiate_command(), OWNER))  # first remembers it INITIATED
    accepted(second.execute(order.id, AttachModel(model_file()), OWNER))
    submitted = accepted(first.execute(order.id, SubmitOrder(), OWNER))  # refused on INITIATED alone
    assert submitted.status is Status.SUBMITTED and submitted.version == 3


def test_a_command_accepted_on_an_outdated_saved_order_is_appended_after_the_newer_events(
    replicas: tuple[OrdersApplication, OrdersApplication],
) -> None:
    first, second = replicas
    order = accepted(first.initiate(initiate_command(), OWNER))
    accepted(second.execute(order.id, AttachModel(model_file()), OWNER))
    accepted(second.execute(order.id, SubmitOrder(), OWNER))
    cancelled = accepted(first.execute(order.id, CancelOrder("changed my mind"), OWNER))
    history = [type(e).__name__ for e in first.history(order.id)]
    assert cancelled.version == 4
    assert history == ["OrderInitiated", "ModelAttached", "OrderSubmitted", "OrderCancelled"]
