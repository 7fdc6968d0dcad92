"""An operator's profile: which materials they work, so that their queue and take-next offer only those.

Event-sourced like the rest of the write side: one aggregate per operator, its id derived from the
operator's subject. No profile, or one declaring no material, means every material. Pure: no I/O.
"""

from __future__ import annotations

from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate

from orders_core.actors import Actor
from orders_core.lifecycle import Role
from orders_core.outcomes import Refusal, Refused

MAX_MATERIALS = 32
"""More codes than any catalog here holds: bounds a profile."""


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
    """Why `actor` may not declare `operator_id`'s materials: the operator does, or an admin for them."""
    if actor.role is Role.ADMIN or (actor.role is Role.OPERATOR and actor.subject == operator_id):
        return None
    return _not_theirs(actor, operator_id)


def _not_theirs(actor: Actor, operator_id: str) -> Refusal:
    if actor.role is Role.OPERATOR:
        return Refusal(Refused.FORBIDDEN, f"an operator has only a profile of their own, not {operator_id}'s")
    return Refusal(Refused.FORBIDDEN, f"a {actor.role} may not do this")


class OperatorProfile(Aggregate):
    """What one operator works: the materials of the orders their queue and take-next offer them."""

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

    def __init__(self) -> None:
        self.operator_id = ""
        self.materials: tuple[str, ...] = ()
        """Sorted material codes; empty: every material."""

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

    def declare(self, materials: list[str], known: frozenset[str], actor: Actor) -> Refusal | None:
        """Declare the materials the operator works (none: every material); `known`: the catalog's codes."""
        refusal = declaring_refusal(actor, self.operator_id)
        if refusal is not None:
            return refusal
        codes = sorted({m.strip().upper() for m in materials})
        if len(codes) > MAX_MATERIALS:
            return Refusal(Refused.INVALID, f"a profile names at most {MAX_MATERIALS} materials")
        unknown = [c for c in codes if c not in known]
        if unknown:
            return Refusal(Refused.INVALID, f"no material {', '.join(unknown)} in the catalog")
        if tuple(codes) != self.materials:
            self.trigger_event(
                self.MaterialsDeclared, actor_role=actor.role.value, actor_id=actor.subject, materials=codes
            )
        return None
