"""Operator profiles: the materials an operator works, declared by them or an admin (pure)."""

from __future__ import annotations

import pytest

from orders_core.actors import Actor
from orders_core.lifecycle import Role
from orders_core.operators import OperatorProfile, declaring_refusal, operator_profile_id, reading_refusal
from orders_core.outcomes import Refused

KNOWN = frozenset({"AU750", "AG925", "PT950"})
OLGA = Actor(Role.OPERATOR, "olga")


def test_an_operator_declares_their_materials_sorted_and_once() -> None:
    profile = OperatorProfile.start("olga", OLGA)
    assert profile.id == operator_profile_id("olga") and profile.materials == ()
    assert profile.declare([" ag925", "AU750", "AG925"], KNOWN, OLGA) is None
    assert profile.materials == ("AG925", "AU750")
    events = profile.collect_events()
    assert [type(e).__name__ for e in events] == ["Started", "MaterialsDeclared"]
    assert profile.declare(["AU750", "AG925"], KNOWN, OLGA) is None  # the same: nothing to store
    assert profile.collect_events() == []
    assert profile.declare([], KNOWN, Actor(Role.ADMIN, "root")) is None  # every material again
    assert profile.materials == ()


def test_unknown_materials_are_refused_by_name() -> None:
    profile = OperatorProfile.start("olga", OLGA)
    refusal = profile.declare(["AU750", "XX999"], KNOWN, OLGA)
    assert refusal is not None and refusal.code is Refused.INVALID and "XX999" in refusal.reason
    assert profile.materials == ()


@pytest.mark.parametrize("role", [Role.SELLER, Role.CUSTOMER, Role.PARTNER, Role.SERVICE])
def test_only_the_operator_or_an_admin_declares(role: Role) -> None:
    profile = OperatorProfile.start("olga", OLGA)
    refusal = profile.declare(["AU750"], KNOWN, Actor(role, "someone"))
    assert refusal is not None and refusal.code is Refused.FORBIDDEN
    other = declaring_refusal(Actor(Role.OPERATOR, "piotr"), "olga")
    assert other is not None and "their own" in other.reason


def test_staff_read_any_profile_an_operator_only_their_own() -> None:
    assert reading_refusal(Actor(Role.SELLER, "sam"), "olga") is None
    assert reading_refusal(Actor(Role.ADMIN, "root"), "olga") is None
    assert reading_refusal(OLGA, "olga") is None
    assert reading_refusal(Actor(Role.OPERATOR, "piotr"), "olga") is not None
    assert reading_refusal(Actor(Role.CUSTOMER, "olga"), "olga") is not None
