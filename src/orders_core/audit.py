"""What the audit knows from the event store alone: each order's state by its own aggregate, and whether
every submission got its answer from pricing. Pure: the audit command feeds it events and compares.

The truth is folded by the Order aggregate itself (its events' `mutate`), not by any projection's fold, so
a projection bug cannot hide behind an identical bug in the reference.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from eventsourcing.domain import OriginatorVersionError

from orders_core.order import Order

ANSWERS = (Order.PriceCalculated, Order.ModelRejected)
"""The events that answer a submission: a quote, or a rejection the customer can read."""


class Problem(enum.StrEnum):
    """Kinds of discrepancy the audit reports."""

    BROKEN_HISTORY = "broken_history"
    """An order's events do not fold: a version is missing or repeated."""
    MISSING_IN_VIEW = "missing_in_view"
    """The order exists in the store but not in a read model that should show it."""
    UNKNOWN_IN_VIEW = "unknown_in_view"
    """A read model shows an order the store does not have."""
    WRONG_STATUS = "wrong_status"
    WRONG_VERSION = "wrong_version"
    VIEW_BEHIND = "view_behind"
    """A projection's tracking position is behind the audited store position."""
    UNANSWERED = "unanswered_submission"
    """A submission waited past the grace period without a quote or rejection."""
    DUPLICATE_ANSWER = "duplicate_answer"
    """More than one quote or rejection for one submission: a result applied twice."""
    RELAY_BEHIND = "relay_behind"
    """Events the relay has not published yet."""
    UNCONSUMED = "unconsumed_messages"
    """Messages still waiting in a queue."""
    DEAD_LETTERS = "dead_letters"
    """Messages in the dead-letter queue: nobody consumed them."""
    WEBHOOKS_BEHIND = "webhooks_behind"
    """Events the webhook sender's outbox has not turned into messages yet."""
    UNDELIVERED_WEBHOOK = "undelivered_webhook"
    """A webhook message that never got through: given up (retries spent, 410, endpoint off or deleted),
    or still waiting past the grace period."""
    PARKED = "parked"
    """A projection holds the order's events back since one of them could not be applied (see `backbone
    projections parked`): the order is stale in that view or, for the relay, not published."""


@dataclass(frozen=True)
class Discrepancy:
    """One thing the audit found wrong, with where and why."""

    problem: Problem
    where: str
    """The read model, queue or component concerned (`mes`, `shop`, `pricing`, `relay`, a queue name)."""
    order_id: str | None
    detail: str


@dataclass(frozen=True)
class OrderTruth:
    """An order as the event store has it, up to the audited position."""

    order_id: str
    version: int
    status: str
    owner_id: str
    position: int
    """Notification id of its last event."""
    waiting_since: datetime | None
    """When its current submission was made, if pricing has not answered it yet."""
    duplicate_answers: int


def fold_order(events: Iterable[tuple[int, Order.Event]]) -> OrderTruth | Discrepancy:
    """Fold one order's (position, event) pairs, in version order, with the aggregate's own rules."""
    order: Order | None = None
    last = 0
    waiting_since: datetime | None = None
    duplicates = 0
    order_id = "?"
    for position, event in events:
        last, order_id = position, str(event.originator_id)
        try:
            order = event.mutate(order)
        except OriginatorVersionError as e:
            return Discrepancy(Problem.BROKEN_HISTORY, "crm", order_id, f"v{event.originator_version}: {e}")
        if isinstance(event, Order.OrderSubmitted | Order.RepriceRequested):
            waiting_since = event.timestamp
        elif isinstance(event, ANSWERS):
            if waiting_since is None:  # no submission open: this answer was applied a second time
                duplicates += 1
            waiting_since = None
        elif isinstance(event, Order.OrderCancelled):
            waiting_since = None  # a withdrawn submission needs no answer
    if order is None:
        raise ValueError("an order without events")
    return OrderTruth(
        order_id, order.version, order.status.value, order.owner_id, last, waiting_since, duplicates
    )


def group_by_order(rows: Iterable[tuple[UUID, int, Order.Event]]) -> Iterator[list[tuple[int, Order.Event]]]:
    """Split (order id, position, event) rows sorted by order id and version into one list per order."""
    current: UUID | None = None
    events: list[tuple[int, Order.Event]] = []
    for order_id, position, event in rows:
        if order_id != current and events:
            yield events
            events = []
        current = order_id
        events.append((position, event))
    if events:
        yield events


@dataclass(frozen=True)
class ViewRow:
    """What a read model shows of an order."""

    order_id: str
    status: str
    version: int
    position: int


def compare_view(
    view: str, truths: dict[str, OrderTruth], rows: Iterable[ViewRow], audited: int, reached: int
) -> list[Discrepancy]:
    """Differences between the store's orders and a read model's rows, up to store position `audited`.

    `reached` is the view's own tracking position: an order whose last event lies beyond it is lag (the
    audit reports the view as behind), not a lost event. A row that has moved past `audited` (written after
    the audit began) is not compared.
    """
    found: list[Discrepancy] = []
    seen: set[str] = set()
    for row in rows:
        seen.add(row.order_id)
        truth = truths.get(row.order_id)
        if truth is None:
            if row.position <= audited:
                found.append(Discrepancy(Problem.UNKNOWN_IN_VIEW, view, row.order_id, f"v{row.version}"))
            continue
        if row.position > audited or truth.position > reached:
            continue
        if row.version != truth.version:
            detail = f"view v{row.version}, store v{truth.version}"
            found.append(Discrepancy(Problem.WRONG_VERSION, view, row.order_id, detail))
        elif row.status != truth.status:
            detail = f"view {row.status}, store {truth.status}"
            found.append(Discrepancy(Problem.WRONG_STATUS, view, row.order_id, detail))
    for order_id in truths.keys() - seen:
        if truths[order_id].position > reached:
            continue
        found.append(Discrepancy(Problem.MISSING_IN_VIEW, view, order_id, f"v{truths[order_id].version}"))
    return found


def compare_pricing(truths: Iterable[OrderTruth], now: datetime, grace_s: float) -> list[Discrepancy]:
    """Submissions unanswered for longer than `grace_s`, and answers applied twice."""
    found: list[Discrepancy] = []
    for truth in truths:
        if truth.duplicate_answers:
            detail = f"{truth.duplicate_answers} extra quote(s) or rejection(s)"
            found.append(Discrepancy(Problem.DUPLICATE_ANSWER, "pricing", truth.order_id, detail))
        if truth.waiting_since is not None:
            waited = (now - truth.waiting_since).total_seconds()
            if waited > grace_s:
                detail = f"submitted {waited:.0f} s ago, no quote or rejection"
                found.append(Discrepancy(Problem.UNANSWERED, "pricing", truth.order_id, detail))
    return found
