"""An operator's profile: which materials and work centres they work, so that their queue and take-next
offer only those.

Event-sourced like the rest of the write side: one aggregate per operator, its id derived from the
operator's subject. An operator works the materials they declared and the materials the catalog makes at
the work centres they declared (`Material.work_centre`, resolved when asked, so a material moved to
another work centre moves with it). No profile, or one declaring neither, means every material. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate

from orders_core.actors import Actor
from orders_core.lifecycle import Role
from orders_core.outcomes import Refusal, Refused
from orders_core.values import Material

MAX_DECLARED = 32
"""More materials, or work centres, than any catalog here holds: bounds a profile."""


def operator_profile_id(operator_id: str) -> UUID:
    """The id of `operator_id`'s profile: derived, so every process finds it without an index."""
    return uuid5(NAMESPACE_URL, f"urn:alexandrite:operator:{operator_id}")


def reading_refusal(actor: Actor, operator_id: str) -> Refusal | None:
    """Why `actor` may not read `operator_id`'s profile: staff read any; an operator only their own."""
    staff = actor.role in (Role.ADMIN, Role.SELLER)
    if staff or (actor.role is Role.OPERATOR and actor.subject == operator_id):
        return None
    return _not_theirs(actor, operator_id)


def declaring_refusal(actor: Actor, operator_id: str) -> Refusal | None:
    """Why `actor` may not declare what `operator_id` works: the operator does, or an admin for them."""
    if actor.role is Role.ADMIN or (actor.role is Role.OPERATOR and actor.subject == operator_id):
        return None
    return _not_theirs(actor, operator_id)


def _not_theirs(actor: Actor, operator_id: str) -> Refusal:
    if actor.role is Role.OPERATOR:
        return Refusal(Refused.FORBIDDEN, f"an operator has only a profile of their own, not {operator_id}'s")
    return Refusal(Refused.FORBIDDEN, f"a {actor.role} may not do this")


class OperatorProfile(Aggregate):
    """What one operator works: materials by code, and work centres."""

    class Event(Aggregate.Event):
        actor_role: str
        actor_id: str

    class Started(Event, Aggregate.Created):
        operator_id: str

        def apply(self, aggregate: Any) -> None:
            aggregate.operator_id = self.operator_id

    class MaterialsDeclared(Event):
        materials: list[str]

        def apply(self, aggregate: Any) -> None:
            aggregate.materials = tuple(self.materials)

    class WorkCentresDeclared(Event):
        work_centres: list[str]

        def apply(self, aggregate: Any) -> None:
            aggregate.work_centres = tuple(self.work_centres)

    def __init__(self) -> None:
        self.operator_id = ""
        self.materials: tuple[str, ...] = ()
        """Sorted material codes."""
        self.work_centres: tuple[str, ...] = ()
        """Sorted work centres."""

    @classmethod
    def start(cls, operator_id: str, actor: Actor) -> OperatorProfile:
        """An operator's profile before anything is declared: every material."""
        return cls._create(
            cls.Started,
            id=operator_profile_id(operator_id),
            actor_role=actor.role.value,
            actor_id=actor.subject,
            operator_id=operator_id,
        )

    def declare(self, materials: list[str], known: Iterable[Material], actor: Actor) -> Refusal | None:
        """Declare the materials the operator works by code; `known`: the catalog's materials."""
        codes = _declared(actor, self.operator_id, materials, {m.code for m in known}, "material")
        if isinstance(codes, Refusal):
            return codes
        if tuple(codes) != self.materials:
            self.trigger_event(
                self.MaterialsDeclared, actor_role=actor.role.value, actor_id=actor.subject, materials=codes
            )
        return None

    def declare_work_centres(
        self, work_centres: list[str], known: Iterable[Material], actor: Actor
    ) -> Refusal | None:
        """Declare the work centres the operator works; `known`: the catalog's materials, whose work
        centres are the ones there are."""
        centres = {m.work_centre for m in known if m.work_centre is not None}
        codes = _declared(actor, self.operator_id, work_centres, centres, "work centre")
        if isinstance(codes, Refusal):
            return codes
        if tuple(codes) != self.work_centres:
            self.trigger_event(
                self.WorkCentresDeclared,
                actor_role=actor.role.value,
                actor_id=actor.subject,
                work_centres=codes,
            )
        return None

    def works(self, catalog: Iterable[Material]) -> tuple[str, ...] | None:
        """The material codes this operator works by `catalog`, sorted: those declared, and those made at a
        declared work centre. None: every material (nothing declared). Empty: none the catalog has now."""
        if not self.materials and not self.work_centres:
            return None
        centres = set(self.work_centres)
        made_here = {m.code for m in catalog if m.work_centre in centres}
        return tuple(sorted(made_here.union(self.materials)))


def _declared(
    actor: Actor, operator_id: str, named: list[str], known: set[str], kind: str
) -> list[str] | Refusal:
    """The codes `named`, sorted and unique, if `actor` may declare them for `operator_id` and `known`
    has each; else why not."""
    refusal = declaring_refusal(actor, operator_id)
    if refusal is not None:
        return refusal
    codes = sorted({c.strip().upper() for c in named})
    if len(codes) > MAX_DECLARED:
        return Refusal(Refused.INVALID, f"a profile names at most {MAX_DECLARED} of each")
    unknown = [c for c in codes if c not in known]
    if unknown:
        return Refusal(Refused.INVALID, f"no {kind} {', '.join(unknown)} in the catalog")
    return codes
