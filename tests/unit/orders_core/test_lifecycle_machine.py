"""Any sequence of commands by anyone keeps the lifecycle's invariants (hypothesis state machine)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from orders_core.actors import Actor, parties
from orders_core.commands import (
    ApproveManufacturing,
    AttachModel,
    CancelOrder,
    CloseOrder,
    Command,
    CompleteManufacturing,
    RecordQuote,
    RejectModel,
    RepriceOrder,
    ShipOrder,
    StartManufacturing,
    StartPackaging,
    SubmitOrder,
)
from orders_core.lifecycle import BY_COMMAND, Status
from orders_core.outcomes import Refused
from tests.orders import EVERYONE, model_file, new_order, quote_for, valid_command

texts = st.text(min_size=0, max_size=12)
models = st.binary(min_size=1, max_size=4).map(model_file)


class OrderLifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.order = new_order()
        self.order.collect_events()
        self.last_stamp: datetime = self.order.modified_on

    def current_sha(self) -> str:
        return self.order.model.sha256 if self.order.model else "0" * 64

    def attempt(self, command: Command, actor: Actor) -> None:
        before_status, before_version = self.order.status, self.order.version
        allowed_before = self.order.allowed_for(actor)
        mine = parties(actor, self.order.facts)
        refusal = self.order.execute(command, actor)
        events = self.order.collect_events()
        transition = BY_COMMAND[command.name()]
        if refusal is not None:
            assert events == []
            assert (self.order.status, self.order.version) == (before_status, before_version)
            if actor.owns_orders and actor.subject != self.order.owner_id:
                # Someone else's order: refused for that first, saying nothing of the order.
                assert (refusal.code, refusal.status, refusal.allowed) == (Refused.FORBIDDEN, None, ())
            else:
                assert refusal.status is before_status
            return
        assert len(events) == 1 and type(events[0]).__name__ == transition.event
        assert before_status in transition.sources and self.order.status is transition.target
        assert transition.parties & mine, (command, actor)
        assert command.name() in allowed_before
        assert self.order.version == before_version + 1
        if isinstance(command, ApproveManufacturing):  # only under a quote that still held
            assert self.order.quote is not None and self.order.quote.valid_until is not None
            assert self.order.entered_at[Status.MANUFACTURING_APPROVED.value] < self.order.quote.valid_until
        stamp = self.order.entered_at[self.order.status.value]
        assert stamp >= self.last_stamp
        self.last_stamp = stamp

    @rule(actor=st.sampled_from(EVERYONE), model=models)
    def attach(self, actor: Actor, model: object) -> None:
        self.attempt(AttachModel(model), actor)  # type: ignore[arg-type]

    @rule(
        actor=st.sampled_from(EVERYONE),
        stale=st.booleans(),
        total=st.integers(1, 10**7),
        holds=st.sampled_from([None, timedelta(hours=1), -timedelta(hours=1)]),
    )
    def record_quote(self, actor: Actor, stale: bool, total: int, holds: timedelta | None) -> None:
        sha = "f" * 64 if stale else self.current_sha()
        quote = quote_for(sha, total)
        if holds is not None:
            quote = msgspec.structs.replace(quote, valid_until=datetime.now(UTC) + holds)
        self.attempt(RecordQuote(quote), actor)

    @rule(actor=st.sampled_from(EVERYONE), reason=texts)
    def reject(self, actor: Actor, reason: str) -> None:
        self.attempt(RejectModel(self.current_sha(), reason or "not watertight"), actor)

    @rule(actor=st.sampled_from(EVERYONE), carrier=texts, tracking=texts)
    def ship(self, actor: Actor, carrier: str, tracking: str) -> None:
        self.attempt(ShipOrder(carrier, tracking), actor)

    @rule(actor=st.sampled_from(EVERYONE), reason=texts)
    def cancel(self, actor: Actor, reason: str) -> None:
        self.attempt(CancelOrder(reason), actor)

    @rule(
        actor=st.sampled_from(EVERYONE),
        command=st.sampled_from(
            [
                SubmitOrder(),
                RepriceOrder(),
                ApproveManufacturing(),
                StartManufacturing(),
                CompleteManufacturing(),
                StartPackaging(),
                CloseOrder(),
            ]
        ),
    )
    def plain(self, actor: Actor, command: Command) -> None:
        self.attempt(command, actor)

    @rule(data=st.data())
    def something_allowed(self, data: st.DataObject) -> None:
        # Random actors rarely reach the end of the table; this rule walks it by what is allowed now.
        candidates = [(a, c) for a in EVERYONE for c in self.order.allowed_for(a)]
        if candidates:
            actor, name = data.draw(st.sampled_from(candidates))
            self.attempt(valid_command(self.order, name), actor)

    @invariant()
    def status_is_known_and_stamped(self) -> None:
        assert self.order.status in Status
        assert self.order.status.value in self.order.entered_at

    @invariant()
    def taken_orders_name_their_operator(self) -> None:
        taken = {
            Status.MANUFACTURING_STARTED,
            Status.MANUFACTURING_COMPLETED,
            Status.PACKAGING,
            Status.SHIPPED,
            Status.CLOSED,
        }
        if self.order.status in taken:
            assert self.order.operator_id is not None

    @invariant()
    def priced_orders_carry_a_quote_for_their_model(self) -> None:
        if self.order.status is Status.PRICE_CALCULATED:
            assert self.order.quote is not None and self.order.model is not None
            assert self.order.quote.model_sha256 == self.order.model.sha256


OrderLifecycle.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
TestOrderLifecycle = OrderLifecycle.TestCase
