"""Who is acting, and which 'who may' parties of the lifecycle table that makes them for one order."""

from __future__ import annotations

from dataclasses import dataclass

from orders_core.lifecycle import BEFORE_APPROVAL, TRANSITIONS, Party, Role, Status, open_while

SELLERS = frozenset({Role.SELLER, Role.ADMIN})
OWNERS = frozenset({Role.CUSTOMER, Role.PARTNER})


@dataclass(frozen=True)
class Actor:
    """An authenticated caller: a role and a subject (user, partner or service id)."""

    role: Role
    subject: str

    @property
    def owns_orders(self) -> bool:
        """Customers and partners act only on their own orders."""
        return self.role in OWNERS


@dataclass(frozen=True)
class OrderFacts:
    """What the 'who may' rules need to know of an order."""

    status: Status
    owner_id: str
    operator_id: str | None
    held: bool = False


def parties(actor: Actor, order: OrderFacts) -> frozenset[Party]:
    """The parties of the lifecycle table that `actor` is for `order`."""
    found: set[Party] = set()
    is_owner = actor.owns_orders and actor.subject == order.owner_id
    if is_owner or actor.role in SELLERS:
        found.add(Party.OWNER)
    if is_owner and order.status in BEFORE_APPROVAL:
        found.add(Party.OWNER_BEFORE_APPROVAL)
    if actor.role in SELLERS:
        found.add(Party.SELLER)
    if actor.role is Role.OPERATOR:
        found.add(Party.OPERATOR)
    if actor.role is Role.OPERATOR and actor.subject == order.operator_id:
        found.add(Party.TAKER)
    if actor.role is Role.SERVICE:
        found.update((Party.PRICING, Party.CARRIER))
    return frozenset(found)


def allowed_commands(actor: Actor, order: OrderFacts) -> tuple[str, ...]:
    """Commands of the lifecycle table `actor` may send to an order with these facts now."""
    mine = parties(actor, order)
    return tuple(
        t.command
        for t in TRANSITIONS
        if order.status in t.sources and t.parties & mine and open_while(order.held, t.command)
    )


def role_may_ever(role: Role, allowed: frozenset[Party]) -> bool:
    """Whether `role` is one of `allowed` on some order (tells a 403 'never yours' from a 409 'not now')."""
    actor = Actor(role, "someone")
    return any(parties(actor, OrderFacts(status, "someone", "someone")) & allowed for status in Status)
