"""The Order aggregate: decides commands against the lifecycle table and folds its events. No I/O."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.domain import Aggregate

from orders_core.actors import Actor, OrderFacts, allowed_commands, parties, role_may_ever
from orders_core.commands import (
    HOLD_REASON_MAX,
    ApproveManufacturing,
    AttachModel,
    CancelOrder,
    CloseOrder,
    Command,
    CompleteManufacturing,
    HoldOrder,
    InitiateOrder,
    RecordQuote,
    RejectModel,
    ReleaseOrder,
    RepriceOrder,
    ShipOrder,
    StartManufacturing,
    StartPackaging,
    SubmitOrder,
)
from orders_core.lifecycle import (
    BY_COMMAND,
    BY_EVENT,
    INITIATE,
    PROMISE_AFTER_SUBMISSION,
    PROMISE_SETTLED,
    STATUS_LIMITS,
    Status,
    open_while,
)
from orders_core.outcomes import Refusal, Refused
from orders_core.values import ModelFile, Quote

CHANNELS = ("shop", "partner")


class Order(Aggregate):
    """A piece of jewellery made to order, from initiation to closing (or rejection, cancellation)."""

    class Event(Aggregate.Event):
        """Every order event records who caused it and the request's trace context."""

        actor_role: str
        actor_id: str
        meta: dict[str, str]

        def apply(self, aggregate: Any) -> None:
            order: Order = aggregate
            target = BY_EVENT[type(self).__name__].target
            if target is not None:  # None: a hold or a release, in the status the order is in
                order.status = target
                order.entered_at[target.value] = self.timestamp
            self.fold(order)

        def fold(self, order: Order) -> None:
            """Set what this event changes besides the status."""

    class OrderInitiated(Event, Aggregate.Created):
        number: str
        channel: str
        owner_id: str
        contact_name: str
        item_title: str
        material_code: str
        quantity: int
        promised_date: date | None
        idempotency_key: str | None
        request_fingerprint: str | None

        def fold(self, order: Order) -> None:
            order.number = self.number
            order.channel = self.channel
            order.owner_id = self.owner_id
            order.contact_name = self.contact_name
            order.item_title = self.item_title
            order.material_code = self.material_code
            order.quantity = self.quantity
            order.promised_date = self.promised_date
            order.idempotency_key = self.idempotency_key
            order.request_fingerprint = self.request_fingerprint

    class ModelAttached(Event):
        model: dict[str, Any]

        def fold(self, order: Order) -> None:
            order.model = msgspec.convert(self.model, ModelFile)
            order.quote = None
            order.rejection_reason = None

    class OrderSubmitted(Event):
        promised_date: date

        def fold(self, order: Order) -> None:
            order.promised_date = self.promised_date
            order.submitted_version = self.originator_version

    class PriceCalculated(Event):
        quote: dict[str, Any]

        def fold(self, order: Order) -> None:
            quote = msgspec.convert(self.quote, Quote)
            order.quote = msgspec.structs.replace(quote, valid_until=quote.holds_until(self.timestamp))
            if order.model is not None:
                triangles = order.quote.figures.triangle_count
                order.model = msgspec.structs.replace(order.model, triangle_count=triangles)

    class ModelRejected(Event):
        reason: str
        preview_sha256: str | None = None
        """The rejected model's preview (pricing.preview), if one was made."""

        def fold(self, order: Order) -> None:
            order.rejection_reason = self.reason

    class RepriceRequested(Event):
        def fold(self, order: Order) -> None:
            # A new pricing request, answered like a submission: results for the last one are stale now.
            order.quote = None
            order.submitted_version = self.originator_version

    class ManufacturingApproved(Event):
        pass

    class ManufacturingStarted(Event):
        operator_id: str

        def fold(self, order: Order) -> None:
            order.operator_id = self.operator_id

    class ManufacturingCompleted(Event):
        pass

    class PackagingStarted(Event):
        pass

    class OrderShipped(Event):
        carrier: str
        tracking_number: str

        def fold(self, order: Order) -> None:
            order.carrier = self.carrier
            order.tracking_number = self.tracking_number

    class OrderClosed(Event):
        pass

    class OrderCancelled(Event):
        reason: str

        def fold(self, order: Order) -> None:
            order.cancellation_reason = self.reason
            order.held_since = order.hold_reason = None

    class OrderHeld(Event):
        reason: str

        def fold(self, order: Order) -> None:
            order.held_since = self.timestamp
            order.hold_reason = self.reason

    class OrderReleased(Event):
        def fold(self, order: Order) -> None:
            order.held_since = order.hold_reason = None

    def __init__(self) -> None:
        self.status = Status.INITIATED
        self.entered_at: dict[str, datetime] = {}
        self.number = ""
        self.channel = ""
        self.owner_id = ""
        self.contact_name = ""
        self.item_title = ""
        self.material_code = ""
        self.quantity = 0
        self.promised_date: date | None = None
        self.idempotency_key: str | None = None
        self.request_fingerprint: str | None = None
        self.model: ModelFile | None = None
        self.quote: Quote | None = None
        self.operator_id: str | None = None
        self.carrier: str | None = None
        self.tracking_number: str | None = None
        self.rejection_reason: str | None = None
        self.cancellation_reason: str | None = None
        self.submitted_version: int | None = None
        self.held_since: datetime | None = None
        self.hold_reason: str | None = None

    @classmethod
    def initiate(
        cls,
        order_id: UUID,
        number: str,
        command: InitiateOrder,
        actor: Actor,
        fingerprint: str | None = None,
        meta: dict[str, str] | None = None,
    ) -> Order | Refusal:
        """A new order, or why `actor` may not initiate it."""
        refusal = initiation_refusal(command, actor)
        if refusal is not None:
            return refusal
        return cls._create(
            cls.OrderInitiated,
            id=order_id,
            actor_role=actor.role.value,
            actor_id=actor.subject,
            meta=meta or {},
            number=number,
            channel=command.channel,
            owner_id=command.owner_id,
            contact_name=command.contact_name,
            item_title=command.item_title,
            material_code=command.material_code,
            quantity=command.quantity,
            promised_date=command.promised_date,
            idempotency_key=command.idempotency_key,
            request_fingerprint=fingerprint,
        )

    def is_stuck(self, now: datetime) -> bool:
        """Whether the order has sat in its status longer than the status's time limit."""
        limit = STATUS_LIMITS.get(self.status)
        entered = self.entered_at.get(self.status.value)
        held = self.held_since is not None  # on hold by decision, not by neglect
        return not held and limit is not None and entered is not None and now - entered > limit

    def is_overdue(self, now: datetime) -> bool:
        """Whether the promised date has passed and the order has not shipped (or ended)."""
        return (
            self.promised_date is not None
            and self.status not in PROMISE_SETTLED
            and now.date() > self.promised_date
        )

    @property
    def facts(self) -> OrderFacts:
        """What the 'who may' rules look at."""
        return OrderFacts(self.status, self.owner_id, self.operator_id, self.held_since is not None)

    def allowed_for(self, actor: Actor) -> tuple[str, ...]:
        """Commands `actor` may send to this order now."""
        return allowed_commands(actor, self.facts)

    def execute(self, command: Command, actor: Actor, meta: dict[str, str] | None = None) -> Refusal | None:
        """Apply `command` for `actor`, or return why not; a refusal changes nothing."""
        refusal = self.refusal_for(command.name(), actor)
        if refusal is not None:
            return refusal
        decided = self._decide(command, actor)
        if isinstance(decided, Refusal):
            return decided
        event_class = getattr(type(self), BY_COMMAND[command.name()].event)
        self.trigger_event(
            event_class, actor_role=actor.role.value, actor_id=actor.subject, meta=meta or {}, **decided
        )
        return None

    def refusal_for(self, command: str, actor: Actor) -> Refusal | None:
        """Why `actor` may not send `command` now, whatever its arguments; None if they may."""
        transition = BY_COMMAND[command]
        refusal = self._permission_refusal(transition.parties, actor)
        if refusal is not None:
            return refusal
        if self.status not in transition.sources:
            return self._status_refusal(command, actor)
        if not open_while(self.held_since is not None, command):
            return self._hold_refusal(command, actor)
        if not transition.parties & parties(actor, self.facts):
            # The role fits the table but not this order now (not the taker; the owner after approval).
            return self._refuse(Refused.FORBIDDEN, self._why_not_yours(command, actor), actor)
        return None

    def _decide(self, command: Command, actor: Actor) -> dict[str, Any] | Refusal:
        """The event's fields for `command`, after the checks that depend on its arguments."""
        match command:
            case AttachModel(model=model):
                return {"model": msgspec.to_builtins(model)}
            case SubmitOrder():
                promised = self.promised_date or _submitted_day() + PROMISE_AFTER_SUBMISSION
                return {"promised_date": promised}
            case RecordQuote(quote=quote, submission=submission):
                stale = self._stale_submission_refusal(submission, actor)
                return stale or self._quote_refusal(quote, actor) or {"quote": msgspec.to_builtins(quote)}
            case RejectModel(
                model_sha256=sha256, reason=reason, submission=submission, preview_sha256=preview
            ):
                stale = self._stale_submission_refusal(submission, actor)
                shown = {"preview_sha256": preview} if preview else {}
                return stale or self._stale_model_refusal(sha256, actor) or {"reason": reason, **shown}
            case StartManufacturing():
                return {"operator_id": actor.subject}
            case ShipOrder(carrier=carrier, tracking_number=tracking):
                if not carrier.strip() or not tracking.strip():
                    return self._refuse(
                        Refused.INVALID, "carrier and tracking_number must not be blank", actor
                    )
                return {"carrier": carrier.strip(), "tracking_number": tracking.strip()}
            case CancelOrder(reason=reason):
                if not reason.strip():
                    return self._refuse(Refused.INVALID, "a cancellation needs a reason", actor)
                return {"reason": reason.strip()}
            case ApproveManufacturing():
                return self._expired_quote_refusal(actor) or {}
            case HoldOrder(reason=reason):
                if not reason.strip():
                    return self._refuse(Refused.INVALID, "a hold needs a reason", actor)
                if len(reason.strip()) > HOLD_REASON_MAX:
                    return self._refuse(
                        Refused.INVALID, f"a hold reason may be at most {HOLD_REASON_MAX} characters", actor
                    )
                return {"reason": reason.strip()}
            case RepriceOrder() | CompleteManufacturing() | StartPackaging() | CloseOrder() | ReleaseOrder():
                return {}
        raise TypeError(f"not an order command: {command!r}")

    def _quote_refusal(self, quote: Quote, actor: Actor) -> Refusal | None:
        stale = self._stale_model_refusal(quote.model_sha256, actor)
        if stale is not None:
            return stale
        if sum(line.amount_minor for line in quote.lines) != quote.total_minor:
            return self._refuse(Refused.INVALID, "the quote's lines do not add up to its total", actor)
        if quote.total_minor <= 0:
            return self._refuse(Refused.INVALID, "a quote's total must be positive", actor)
        return None

    def _expired_quote_refusal(self, actor: Actor) -> Refusal | None:
        until = self.quote.valid_until if self.quote else None
        if until is None or Order.Event.create_timestamp() < until:
            return None
        return self._refuse(
            Refused.QUOTE_EXPIRED,
            f"the quote expired at {until:%Y-%m-%d %H:%M} UTC; metal prices may have moved since. "
            f"Re-price the order (POST /orders/{self.id}/reprice) and approve the new quote",
            actor,
            {"valid_until": until.isoformat(), "reprice": f"/orders/{self.id}/reprice"},
        )

    def _stale_submission_refusal(self, submission: int | None, actor: Actor) -> Refusal | None:
        if submission is None or submission == self.submitted_version:
            return None
        return self._refuse(
            Refused.NOT_ALLOWED,
            f"the result answers submission v{submission}; the order's last submission is "
            f"v{self.submitted_version}",
            actor,
        )

    def _stale_model_refusal(self, sha256: str, actor: Actor) -> Refusal | None:
        current = self.model.sha256 if self.model else None
        if sha256 == current:
            return None
        return self._refuse(
            Refused.NOT_ALLOWED,
            f"the result is for model {sha256[:12]}, but the order's model is now {str(current)[:12]}",
            actor,
        )

    def _permission_refusal(self, allowed: frozenset[Any], actor: Actor) -> Refusal | None:
        if actor.owns_orders and actor.subject != self.owner_id:
            # Ownership first, and a refusal that says nothing of the order, not even its status: someone
            # else's order shows nothing, whatever was asked of it.
            return Refusal(Refused.FORBIDDEN, "this order belongs to someone else")
        if not role_may_ever(actor.role, allowed):
            return self._refuse(Refused.FORBIDDEN, f"a {actor.role} may not do this", actor)
        return None

    def _status_refusal(self, command: str, actor: Actor) -> Refusal:
        if command == "StartManufacturing" and self.operator_id is not None:
            return self._refuse(
                Refused.NOT_ALLOWED,
                f"order {self.number} was already taken by {self.operator_id}",
                actor,
                {"taken_by": self.operator_id},
            )
        return self._refuse(Refused.NOT_ALLOWED, f"{command} is not allowed in status {self.status}", actor)

    def _hold_refusal(self, command: str, actor: Actor) -> Refusal:
        if self.held_since is None:
            return self._refuse(Refused.NOT_ALLOWED, f"order {self.number} is not on hold", actor)
        since = f"{self.held_since:%Y-%m-%d %H:%M} UTC"
        return self._refuse(
            Refused.NOT_ALLOWED,
            f"order {self.number} is on hold since {since} ({self.hold_reason}); release it first",
            actor,
            {"held_since": self.held_since.isoformat(), "hold_reason": self.hold_reason or ""},
        )

    def _why_not_yours(self, command: str, actor: Actor) -> str:
        if command == "CompleteManufacturing":
            return f"only {self.operator_id}, who took this order, may complete it"
        if command == "CancelOrder":
            return "after manufacturing is approved, only a seller may cancel"
        return f"a {actor.role} may not {command} this order"

    def _refuse(
        self, code: Refused, reason: str, actor: Actor, details: dict[str, str] | None = None
    ) -> Refusal:
        return Refusal(code, reason, self.status, self.allowed_for(actor), details or {})


def _submitted_day() -> date:
    return Order.Event.create_timestamp().date()


def initiation_refusal(command: InitiateOrder, actor: Actor) -> Refusal | None:
    """Why `actor` may not initiate `command`, if they may not."""
    if not role_may_ever(actor.role, INITIATE.parties):
        return Refusal(Refused.FORBIDDEN, f"a {actor.role} may not initiate orders")
    if actor.owns_orders:
        if command.owner_id != actor.subject:
            return Refusal(Refused.FORBIDDEN, "customers and partners initiate orders only for themselves")
        expected = "partner" if actor.role == "partner" else "shop"
        if command.channel != expected:
            return Refusal(Refused.INVALID, f"a {actor.role}'s orders come through the {expected} channel")
    if command.channel not in CHANNELS:
        return Refusal(Refused.INVALID, f"channel must be one of {', '.join(CHANNELS)}")
    if command.quantity < 1:
        return Refusal(Refused.INVALID, "quantity must be at least 1")
    return None
