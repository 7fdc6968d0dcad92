"""The order lifecycle, as data (docs/architecture.md shows it as a table).

Everything else (the aggregate's rules, the API's 409 bodies, the console's buttons, the hypothesis state
machine) is derived from `TRANSITIONS`; nothing else spells out which command moves which status.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import timedelta


class Status(enum.StrEnum):
    """Where an order stands, spelled as the business spells it."""

    INITIATED = "INITIATED"
    FILE_UPLOADED = "FILE_UPLOADED"
    SUBMITTED = "SUBMITTED"
    PRICE_CALCULATED = "PRICE_CALCULATED"
    MANUFACTURING_APPROVED = "MANUFACTURING_APPROVED"
    MANUFACTURING_STARTED = "MANUFACTURING_STARTED"
    MANUFACTURING_COMPLETED = "MANUFACTURING_COMPLETED"
    PACKAGING = "PACKAGING"
    SHIPPED = "SHIPPED"
    CLOSED = "CLOSED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"


class Role(enum.StrEnum):
    """The roles a bearer token may carry."""

    CUSTOMER = "customer"
    PARTNER = "partner"
    SELLER = "seller"
    OPERATOR = "operator"
    ADMIN = "admin"
    SERVICE = "service"


class Party(enum.Enum):
    """The 'who may' column: a relation between an actor and an order, not just a role."""

    OWNER = "the customer or partner who owns the order, or a seller acting for them"
    OWNER_BEFORE_APPROVAL = "the owner, before manufacturing is approved"
    SELLER = "a seller"
    OPERATOR = "an operator"
    TAKER = "the operator who took the order"
    PRICING = "the pricing service"
    CARRIER = "the carrier's delivery message (service)"


@dataclass(frozen=True)
class Transition:
    """One row of the lifecycle table."""

    command: str
    event: str
    sources: frozenset[Status]
    target: Status
    parties: frozenset[Party]
    action: str | None
    """The path segment of `POST /orders/{order_id}/{action}`; None where the command has no endpoint."""


def _row(
    command: str, event: str, sources: set[Status], target: Status, parties: set[Party], action: str | None
) -> Transition:
    return Transition(command, event, frozenset(sources), target, frozenset(parties), action)


S = Status
BEFORE_APPROVAL = frozenset({S.INITIATED, S.FILE_UPLOADED, S.SUBMITTED, S.PRICE_CALCULATED, S.REJECTED})
BEFORE_MANUFACTURING = BEFORE_APPROVAL | {S.MANUFACTURING_APPROVED}

INITIATE = _row("InitiateOrder", "OrderInitiated", set(), S.INITIATED, {Party.OWNER, Party.SELLER}, None)

TRANSITIONS: tuple[Transition, ...] = (
    INITIATE,
    _row(
        "AttachModel",
        "ModelAttached",
        {S.INITIATED, S.FILE_UPLOADED, S.REJECTED},
        S.FILE_UPLOADED,
        {Party.OWNER},
        None,
    ),
    _row("SubmitOrder", "OrderSubmitted", {S.FILE_UPLOADED}, S.SUBMITTED, {Party.OWNER}, "submit"),
    _row("RecordQuote", "PriceCalculated", {S.SUBMITTED}, S.PRICE_CALCULATED, {Party.PRICING}, None),
    _row("RejectModel", "ModelRejected", {S.SUBMITTED}, S.REJECTED, {Party.PRICING}, None),
    _row(
        "RepriceOrder",
        "RepriceRequested",
        {S.PRICE_CALCULATED},
        S.SUBMITTED,
        {Party.OWNER, Party.SELLER},
        "reprice",
    ),
    _row(
        "ApproveManufacturing",
        "ManufacturingApproved",
        {S.PRICE_CALCULATED},
        S.MANUFACTURING_APPROVED,
        {Party.SELLER},
        "approve",
    ),
    _row(
        "StartManufacturing",
        "ManufacturingStarted",
        {S.MANUFACTURING_APPROVED},
        S.MANUFACTURING_STARTED,
        {Party.OPERATOR},
        "take",
    ),
    _row(
        "CompleteManufacturing",
        "ManufacturingCompleted",
        {S.MANUFACTURING_STARTED},
        S.MANUFACTURING_COMPLETED,
        {Party.TAKER},
        "complete",
    ),
    _row(
        "StartPackaging",
        "PackagingStarted",
        {S.MANUFACTURING_COMPLETED},
        S.PACKAGING,
        {Party.OPERATOR},
        "package",
    ),
    _row("ShipOrder", "OrderShipped", {S.PACKAGING}, S.SHIPPED, {Party.OPERATOR}, "ship"),
    _row("CloseOrder", "OrderClosed", {S.SHIPPED}, S.CLOSED, {Party.SELLER, Party.CARRIER}, "close"),
    _row(
        "CancelOrder",
        "OrderCancelled",
        set(BEFORE_MANUFACTURING),
        S.CANCELLED,
        {Party.OWNER_BEFORE_APPROVAL, Party.SELLER},
        "cancel",
    ),
)

BY_COMMAND: dict[str, Transition] = {t.command: t for t in TRANSITIONS}
BY_EVENT: dict[str, Transition] = {t.event: t for t in TRANSITIONS}
BY_ACTION: dict[str, Transition] = {t.action: t for t in TRANSITIONS if t.action}

TERMINAL: frozenset[Status] = frozenset({S.CLOSED, S.CANCELLED})

# How long an order may sit in a status before it counts as stuck. Pricing is minutes, people are days.
STATUS_LIMITS: dict[Status, timedelta] = {
    S.INITIATED: timedelta(days=7),
    S.FILE_UPLOADED: timedelta(days=7),
    S.SUBMITTED: timedelta(minutes=15),
    S.PRICE_CALCULATED: timedelta(days=2),
    S.MANUFACTURING_APPROVED: timedelta(days=1),
    S.MANUFACTURING_STARTED: timedelta(days=10),
    S.MANUFACTURING_COMPLETED: timedelta(days=2),
    S.PACKAGING: timedelta(days=2),
    S.SHIPPED: timedelta(days=14),
    S.REJECTED: timedelta(days=14),
}

PROMISE_AFTER_SUBMISSION = timedelta(days=21)
EXPECTED_MANUFACTURING = timedelta(days=2)
"""How long manufacturing (MANUFACTURING_STARTED) is expected to take for a material whose catalog entry
gives no estimate: a cautious two days of elapsed time, nights included (STATUS_LIMITS calls ten stuck)."""
PROMISE_SETTLED: frozenset[Status] = frozenset({S.SHIPPED, S.CLOSED, S.CANCELLED})
"""Once shipped (or ended) an order can no longer miss its promised date."""


def next_statuses(status: Status) -> frozenset[Status]:
    """Statuses an order in `status` can move to in one command."""
    return frozenset(t.target for t in TRANSITIONS if status in t.sources)


def commands_from(status: Status) -> tuple[str, ...]:
    """Commands the table allows in `status`, whoever sends them."""
    return tuple(t.command for t in TRANSITIONS if status in t.sources)
