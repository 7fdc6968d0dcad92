"""The CRM's event-sourced application: runs commands against aggregates and appends their events."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import TypeVar
from uuid import UUID, uuid4

import structlog
from eventsourcing.application import AggregateNotFoundError, Application, LRUCache
from eventsourcing.persistence import IntegrityError, JSONTranscoder, Recording, Transcoding
from eventsourcing.postgres import PostgresApplicationRecorder
from opentelemetry import trace

from orders_core import metrics
from orders_core.actors import Actor
from orders_core.catalog import (
    CATALOG_ID,
    DEFAULT_LABOUR,
    DEFAULT_MATERIALS,
    DEFAULT_PRODUCTS,
    Catalog,
)
from orders_core.commands import Command, InitiateOrder
from orders_core.event_store import GroupedSaves
from orders_core.idempotency import (
    IDEMPOTENCY_WINDOW,
    key_order_id,
    newest_generation,
    request_fingerprint,
)
from orders_core.lifecycle import Role
from orders_core.numbers import OrderNumbers, local_blocks, sequence_blocks
from orders_core.operators import OperatorProfile, operator_profile_id
from orders_core.order import Order
from orders_core.outcomes import Accepted, Refusal, Refused
from orders_core.values import Material
from orders_core.webhooks import PartnerWebhooks, partner_webhooks_id

SYSTEM = Actor(Role.ADMIN, "system")
log = structlog.get_logger("commands")
CONFLICT_RETRIES = 8
"""A command that lost an optimistic-concurrency race is decided again on the new state this many times."""
SAVED_ORDERS_REMEMBERED = 10_000
"""Orders this process saved last, kept to decide the next command on one without reading the store."""

A = TypeVar("A", Order, Catalog, PartnerWebhooks, OperatorProfile)


def utc_now() -> datetime:
    """The wall clock, in UTC (what eventsourcing stamps events with)."""
    return datetime.now(UTC)


class DateAsISO(Transcoding):
    """Stores `datetime.date` (promised dates) as ISO strings."""

    type = date
    name = "date_iso"

    def encode(self, obj: date) -> str:
        return obj.isoformat()

    def decode(self, data: str) -> date:
        return date.fromisoformat(data)


class OrdersApplication(Application[UUID]):
    """Orders and the catalog, stored as events in schema `crm`; the only write side of the system."""

    name = "orders"

    def __init__(
        self,
        env: dict[str, str] | None = None,
        *,
        idempotency_window: timedelta = IDEMPOTENCY_WINDOW,
        clock: Callable[[], datetime] = utc_now,
        numbers: OrderNumbers | None = None,
    ) -> None:
        """`numbers`: where order numbers come from (default: the store's sequence, or a local counter for
        a store that is not PostgreSQL)."""
        super().__init__(env)
        self.idempotency_window = idempotency_window
        """A create repeating an Idempotency-Key gets the key's order back while that order is younger than
        this; after it, the key starts a new order (IDEMPOTENCY_WINDOW_HOURS)."""
        self._clock = clock
        if numbers is None:
            recorder = self.recorder
            blocks = (
                sequence_blocks(recorder.datastore)
                if isinstance(recorder, PostgresApplicationRecorder)
                else local_blocks()
            )
            numbers = OrderNumbers(blocks)
        self._numbers = numbers
        self._known_materials: frozenset[str] = frozenset()
        self._remembered_orders: LRUCache[UUID, Order] = LRUCache(maxsize=SAVED_ORDERS_REMEMBERED)
        self._grouped_saves = GroupedSaves(self.save)

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        transcoder.register(DateAsISO())

    # --- orders -----------------------------------------------------------------------------------------

    def initiate(
        self, command: InitiateOrder, actor: Actor, meta: dict[str, str] | None = None
    ) -> Accepted[Order] | Refusal:
        """Create an order; with an idempotency key, a repeat returns the first order instead of a second
        while that order is younger than `idempotency_window`, and starts a new order after it."""
        started = time.perf_counter()
        result = self._initiate(command, actor, meta)
        order_id = str(result.value.id) if isinstance(result, Accepted) else None
        _record(command.name(), actor, started, result, order_id, meta)
        return result

    def execute(
        self, order_id: UUID, command: Command, actor: Actor, meta: dict[str, str] | None = None
    ) -> Accepted[Order] | Refusal:
        """Run `command` on an order; on a concurrent change, decide again on the new state."""
        started = time.perf_counter()
        result = self._execute(order_id, command, actor, meta)
        _record(command.name(), actor, started, result, str(order_id), meta)
        return result

    async def initiate_async(
        self, command: InitiateOrder, actor: Actor, meta: dict[str, str] | None = None
    ) -> Accepted[Order] | Refusal:
        """As `initiate`, on an event loop, which it never blocks (see `execute_async`)."""
        started = time.perf_counter()
        result = await self._initiate_async(command, actor, meta)
        order_id = str(result.value.id) if isinstance(result, Accepted) else None
        _record(command.name(), actor, started, result, order_id, meta)
        return result

    async def execute_async(
        self, order_id: UUID, command: Command, actor: Actor, meta: dict[str, str] | None = None
    ) -> Accepted[Order] | Refusal:
        """As `execute`, on an event loop, which it never blocks.

        A command this process can decide without reading the store (on an order it saved last) is decided
        on the loop and only its append leaves it, to the grouped saves' thread; any other runs whole on a
        worker thread. A thread per command costs more than deciding it, so the common case is kept off them.
        """
        started = time.perf_counter()
        result = await self._execute_async(order_id, command, actor, meta)
        _record(command.name(), actor, started, result, str(order_id), meta)
        return result

    async def _initiate_async(
        self, command: InitiateOrder, actor: Actor, meta: dict[str, str] | None
    ) -> Accepted[Order] | Refusal:
        number = None
        if command.idempotency_key is None and command.material_code in self._known_materials:
            number = self._numbers.at_hand()
        if number is None:  # a read is due: the key's orders, the catalog or a block of numbers
            return await asyncio.to_thread(self._initiate, command, actor, meta)
        created = Order.initiate(uuid4(), number, command, actor, None, meta)
        if isinstance(created, Refusal):
            return created
        return Accepted(created, await self._append_async(created))

    async def _execute_async(
        self, order_id: UUID, command: Command, actor: Actor, meta: dict[str, str] | None
    ) -> Accepted[Order] | Refusal:
        order = self._remembered_order(order_id)
        if order is not None and order.execute(command, actor, meta) is None:
            try:
                return Accepted(order, await self._append_async(order))
            except IntegrityError:
                metrics.CONFLICTS.inc()
        # Not saved here, refused on the state this process saved (which another may have changed), or lost
        # a race: decided on the stored order, as `execute` does then.
        return await asyncio.to_thread(self._execute, order_id, command, actor, meta, remembered=False)

    def _initiate(
        self, command: InitiateOrder, actor: Actor, meta: dict[str, str] | None = None
    ) -> Accepted[Order] | Refusal:
        if not self._is_material(command.material_code):
            return Refusal(Refused.INVALID, f"unknown material {command.material_code!r}")
        fingerprint = None
        order_id = uuid4()  # keyless creates cost no read at all
        if command.idempotency_key is not None:
            fingerprint = request_fingerprint(command)
            key = command.idempotency_key
            generation = 0
            newest = newest_generation(lambda g: self.order(key_order_id(actor, key, g)))
            if newest is not None:
                generation, latest = newest
                if self._clock() - latest.created_on < self.idempotency_window:
                    return self._repeated_create(latest, fingerprint)
                generation += 1  # the key's order has left the window: the key now starts another
            order_id = key_order_id(actor, key, generation)
        created = Order.initiate(order_id, self._numbers.next(), command, actor, fingerprint, meta)
        if isinstance(created, Refusal):
            return created
        try:
            return Accepted(created, self._append(created))
        except IntegrityError:
            # Another request with the same key won the race; it is the same order or a misuse of the key.
            existing = self.order(order_id)
            if existing is None:
                raise
            return self._repeated_create(existing, fingerprint)

    def _execute(
        self,
        order_id: UUID,
        command: Command,
        actor: Actor,
        meta: dict[str, str] | None = None,
        remembered: bool = True,
    ) -> Accepted[Order] | Refusal:
        """The first decision is taken on the order as this process last saved it, if it did (and
        `remembered`), without reading the store: another process may have changed it since, but then an
        acceptance fails to save (the version it appends at is taken) and a refusal is not trusted, and both
        are decided again on the stored order. So nothing is ever appended to, or refused on, a state that
        is not the newest.
        """
        order = self._remembered_order(order_id) if remembered else None
        for _ in range(CONFLICT_RETRIES):
            stored = order is None
            if order is None:
                order = self.order(order_id)
                if order is None:
                    return Refusal(Refused.NOT_FOUND, f"no order {order_id}")
            refusal = order.execute(command, actor, meta)
            if refusal is not None and stored:
                return refusal
            if refusal is None:
                try:
                    return Accepted(order, self._append(order))
                except IntegrityError:
                    metrics.CONFLICTS.inc()
            order = None
        raise RuntimeError(f"order {order_id} kept changing under {command.name()}")

    def order(self, order_id: UUID) -> Order | None:
        """The order as the event store holds it now, or None."""
        return self._get(order_id, Order)

    def history(self, order_id: UUID) -> list[Order.Event]:
        """Every event of one order, oldest first."""
        return list(self._history(order_id))

    def _history(self, order_id: UUID) -> Iterator[Order.Event]:
        for event in self.events.get(order_id):
            if isinstance(event, Order.Event):
                yield event

    def _repeated_create(self, existing: Order, fingerprint: str | None) -> Accepted[Order] | Refusal:
        if existing.request_fingerprint != fingerprint:
            return Refusal(
                Refused.IDEMPOTENCY_KEY_REUSED,
                "this Idempotency-Key was already used for a different order request",
                details={"order_id": str(existing.id)},
            )
        return Accepted(existing, self.position(), replayed=True)

    # --- catalog ----------------------------------------------------------------------------------------

    def catalog(self) -> Catalog:
        """The catalog as the write side holds it; seeded with the defaults on first use."""
        catalog = self._get(CATALOG_ID, Catalog)
        if catalog is None:
            self.seed_catalog()
            catalog = self._get(CATALOG_ID, Catalog)
            assert catalog is not None
        return catalog

    def _is_material(self, code: str) -> bool:
        # Materials are added or repriced, never removed: a code this process has seen stays valid, so
        # only an unseen code costs a read of the catalog (which may have gained it on another replica).
        if code not in self._known_materials:
            self._known_materials = frozenset(self.catalog().materials)
        return code in self._known_materials

    def seed_catalog(self) -> None:
        """Store the default catalog unless there is one already."""
        if self._get(CATALOG_ID, Catalog) is not None:
            return
        seeded = Catalog.seed("EUR", DEFAULT_MATERIALS, DEFAULT_LABOUR, DEFAULT_PRODUCTS, SYSTEM)
        with contextlib.suppress(IntegrityError):  # another process seeded it first, with the same defaults
            self.save(seeded)

    def change_catalog(self, change: Callable[[Catalog], Refusal | None]) -> Accepted[Catalog] | Refusal:
        """Apply `change` (a Catalog method bound to its arguments) and store what it decided."""
        for _ in range(CONFLICT_RETRIES):
            catalog = self.catalog()
            refusal = change(catalog)
            if refusal is not None:
                return refusal
            try:
                return Accepted(catalog, self._append(catalog))
            except IntegrityError:
                continue
        raise RuntimeError("the catalog kept changing")

    # --- webhook endpoints ------------------------------------------------------------------------------

    def webhooks(self, partner_id: str) -> PartnerWebhooks | None:
        """A partner's webhook endpoints as the event store holds them now, or None if it never had any."""
        return self._get(partner_webhooks_id(partner_id), PartnerWebhooks)

    def change_webhooks(
        self,
        command: str,
        partner_id: str,
        change: Callable[[PartnerWebhooks], Refusal | None],
        actor: Actor,
        meta: dict[str, str] | None = None,
        endpoint_id: UUID | None = None,
    ) -> Accepted[PartnerWebhooks] | Refusal:
        """Apply `change` (a PartnerWebhooks method bound to its arguments: `command`, named for the log) to
        the partner's endpoints and store what it decided; on a concurrent change, decide again on the new
        state."""
        started = time.perf_counter()
        for _ in range(CONFLICT_RETRIES):
            webhooks = self.webhooks(partner_id) or PartnerWebhooks.start(partner_id, actor)
            result: Accepted[PartnerWebhooks] | Refusal | None = change(webhooks)
            if result is None:
                try:
                    # A change that changed nothing (disabling a disabled endpoint) stores nothing.
                    stored = self._append(webhooks) if webhooks.pending_events else self.position()
                    result = Accepted(webhooks, stored)
                except IntegrityError:
                    metrics.CONFLICTS.inc()
                    continue
            _log_webhooks_command(command, partner_id, endpoint_id, actor, started, result, meta)
            return result
        raise RuntimeError(f"the webhook endpoints of {partner_id} kept changing")

    # --- operator profiles ------------------------------------------------------------------------------

    def operator_profile(self, operator_id: str) -> OperatorProfile | None:
        """What an operator declared they work, or None if they never declared anything (every material)."""
        return self._get(operator_profile_id(operator_id), OperatorProfile)

    def works(self, operator_id: str) -> tuple[str, ...] | None:
        """The material codes `operator_id` works by today's catalog (None: every material)."""
        profile = self.operator_profile(operator_id)
        return profile.works(self.catalog().materials.values()) if profile else None

    def declare_materials(
        self, operator_id: str, materials: list[str], actor: Actor
    ) -> Accepted[OperatorProfile] | Refusal:
        """Declare the materials `operator_id` works by code (none: only their work centres', or every
        material if they declare no work centre either); a repeat stores nothing."""
        return self._change_profile(operator_id, lambda p, known: p.declare(materials, known, actor), actor)

    def declare_work_centres(
        self, operator_id: str, work_centres: list[str], actor: Actor
    ) -> Accepted[OperatorProfile] | Refusal:
        """Declare the work centres `operator_id` works; a repeat stores nothing."""
        return self._change_profile(
            operator_id, lambda p, known: p.declare_work_centres(work_centres, known, actor), actor
        )

    def _change_profile(
        self,
        operator_id: str,
        change: Callable[[OperatorProfile, list[Material]], Refusal | None],
        actor: Actor,
    ) -> Accepted[OperatorProfile] | Refusal:
        for _ in range(CONFLICT_RETRIES):
            profile = self.operator_profile(operator_id) or OperatorProfile.start(operator_id, actor)
            refusal = change(profile, list(self.catalog().materials.values()))
            if refusal is not None:
                return refusal
            try:
                stored = self._append(profile) if profile.pending_events else self.position()
            except IntegrityError:
                metrics.CONFLICTS.inc()
                continue
            log.info(
                "operator profile",
                operator_id=operator_id,
                materials=list(profile.materials),
                work_centres=list(profile.work_centres),
                actor_role=actor.role.value,
                actor_id=actor.subject,
            )
            return Accepted(profile, stored)
        raise RuntimeError(f"the profile of {operator_id} kept changing")

    # --- store ------------------------------------------------------------------------------------------

    def position(self) -> int:
        """The newest position in the event store's notification log."""
        return self.recorder.max_notification_id() or 0

    def close(self) -> None:
        self._grouped_saves.close()
        super().close()

    def _append(self, aggregate: Order | Catalog | PartnerWebhooks | OperatorProfile) -> int:
        with metrics.APPEND_SECONDS.time():
            recordings = self._grouped_saves.save(aggregate.collect_events())
        position = self._remember(aggregate, recordings)
        return self.position() if position is None else position

    async def _append_async(self, aggregate: Order) -> int:
        started = time.perf_counter()
        recordings = await self._grouped_saves.save_async(aggregate.collect_events())
        metrics.APPEND_SECONDS.observe(time.perf_counter() - started)
        position = self._remember(aggregate, recordings)
        return await asyncio.to_thread(self.position) if position is None else position

    def _remember(
        self,
        aggregate: Order | Catalog | PartnerWebhooks | OperatorProfile,
        recordings: list[Recording[UUID]],
    ) -> int | None:
        """Remember an order as saved; the position its events reached (None if there were none)."""
        if isinstance(aggregate, Order):
            # Kept as saved and only ever copied out: the caller gets it to read, not to change.
            self._remembered_orders.put(aggregate.id, aggregate)
        if not recordings:
            return None
        return max(r.notification.id for r in recordings)

    def _remembered_order(self, order_id: UUID) -> Order | None:
        try:
            saved = self._remembered_orders.get(order_id)
        except KeyError:
            return None
        return _copy_to_decide_on(saved)

    def _get(self, aggregate_id: UUID, kind: type[A]) -> A | None:
        try:
            found: object = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
        return found if isinstance(found, kind) else None


_CONTAINERS = (dict, list, set)


def _copy_to_decide_on(order: Order) -> Order:
    """A copy of `order` that a command may change without changing `order`.

    An aggregate changes only by its events' `apply`, which assign attributes or set entries of its
    containers (the status times, the pending events) to values that are themselves never changed in
    place (strings, numbers, dates, frozen Structs). So fresh containers are all a copy needs: a tenth of
    the cost of `deepcopy`, which walked every value on every command.
    """
    copied = object.__new__(type(order))
    copied.__dict__.update((k, v.copy() if isinstance(v, _CONTAINERS) else v) for k, v in vars(order).items())
    return copied


def _record(
    command: str,
    actor: Actor,
    started: float,
    result: Accepted[Order] | Refusal,
    order_id: str | None,
    meta: dict[str, str] | None,
) -> None:
    """The command's canonical log line and its metrics: what on-call reads first."""
    seconds = time.perf_counter() - started
    outcome = "accepted" if isinstance(result, Accepted) else result.code.value
    metrics.observe_command(command, outcome, seconds)
    span = trace.get_current_span().get_span_context()
    log.info(
        "command",
        command=command,
        outcome=outcome,
        order_id=order_id,
        position=result.position if isinstance(result, Accepted) else None,
        reason=result.reason if isinstance(result, Refusal) else None,
        actor_role=actor.role.value,
        actor_id=actor.subject,
        duration_ms=round(seconds * 1000, 2),
        correlation_id=(meta or {}).get("correlation_id"),
        trace_id=f"{span.trace_id:032x}" if span.is_valid else None,
    )


def _log_webhooks_command(
    command: str,
    partner_id: str,
    endpoint_id: UUID | None,
    actor: Actor,
    started: float,
    result: Accepted[PartnerWebhooks] | Refusal,
    meta: dict[str, str] | None,
) -> None:
    """Who sent which command to a partner's webhook endpoints and how it ended; never the events' fields
    (a registration's and a rotation's carry the new secret)."""
    log.info(
        "webhooks command",
        command=command,
        partner_id=partner_id,
        endpoint_id=str(endpoint_id) if endpoint_id is not None else None,
        outcome="accepted" if isinstance(result, Accepted) else result.code.value,
        reason=result.reason if isinstance(result, Refusal) else None,
        position=result.position if isinstance(result, Accepted) else None,
        actor_role=actor.role.value,
        actor_id=actor.subject,
        duration_ms=round((time.perf_counter() - started) * 1000, 2),
        correlation_id=(meta or {}).get("correlation_id"),
    )
