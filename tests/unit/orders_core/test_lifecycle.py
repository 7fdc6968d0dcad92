"""The lifecycle table is the single source: every row has its command and event classes."""

from __future__ import annotations

from orders_core.commands import ORDER_COMMANDS
from orders_core.lifecycle import BY_ACTION, TERMINAL, TRANSITIONS, Status, commands_from, next_statuses
from orders_core.order import Order


def test_every_transition_has_an_event_class_on_the_order() -> None:
    for t in TRANSITIONS:
        assert issubclass(getattr(Order, t.event), Order.Event), t.event


def test_every_transition_but_initiation_has_a_command_class() -> None:
    assert set(ORDER_COMMANDS) == {t.command for t in TRANSITIONS} - {"InitiateOrder"}


def test_terminal_statuses_allow_no_command() -> None:
    for status in TERMINAL:
        assert commands_from(status) == ()
        assert next_statuses(status) == frozenset()


def test_every_non_terminal_status_can_move_on() -> None:
    for status in set(Status) - TERMINAL:
        assert next_statuses(status), status


def test_cancellation_is_possible_only_before_manufacturing_starts() -> None:
    cancellable = {s for s in Status if "CancelOrder" in commands_from(s)}
    assert Status.MANUFACTURING_APPROVED in cancellable
    assert Status.REJECTED in cancellable
    assert Status.MANUFACTURING_STARTED not in cancellable
    assert cancellable.isdisjoint({Status.PACKAGING, Status.SHIPPED, Status.CLOSED})


def test_rejected_orders_take_a_new_model() -> None:
    assert next_statuses(Status.REJECTED) == {Status.FILE_UPLOADED, Status.CANCELLED}


def test_actions_are_the_http_commands_of_the_design() -> None:
    assert set(BY_ACTION) == {
        "submit",
        "reprice",
        "approve",
        "take",
        "complete",
        "package",
        "ship",
        "close",
        "cancel",
    }
