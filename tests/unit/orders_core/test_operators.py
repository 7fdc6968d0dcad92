"""Operator profiles: the materials and work centres an operator works, declared by them or an admin, and
what they come to by the catalog (pure)."""

from __future__ import annotations

import pytest

from orders_core.actors import Actor
from orders_core.lifecycle import Role
from orders_core.operators import OperatorProfile, declaring_refusal, operator_profile_id, reading_refusal
from orders_core.outcomes import Refused
from orders_core.values import Material


def material(code: str, work_centre: str | None = None) -> Material:
    return Material(
        code=code, name=code, density_g_cm3=15.0, price_per_gram_minor=5000, work_centre=work_centre
    )


KNOWN = [material("AU750", "CASTING-AU"), material("AG925", "CASTING-AG"), material("PT950")]
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
    assert profile.materials == () and profile.works(KNOWN) is None


def test_work_centres_come_to_the_materials_the_catalog_makes_there_now() -> None:
    profile = OperatorProfile.start("olga", OLGA)
    assert profile.works(KNOWN) is None, "nothing declared: every material"
    assert profile.declare_work_centres(["casting-au"], KNOWN, OLGA) is None
    assert profile.work_centres == ("CASTING-AU",) and profile.works(KNOWN) == ("AU750",)
    assert profile.declare(["PT950"], KNOWN, OLGA) is None
    assert profile.works(KNOWN) == ("AU750", "PT950"), "declared materials and the centre's together"
    moved = [material("AU750", "CASTING-AG"), material("AU585", "CASTING-AU"), material("PT950")]
    assert profile.works(moved) == ("AU585", "PT950"), "a material moved to another centre moves with it"
    assert profile.declare([], KNOWN, OLGA) is None
    gone = [material("AU750"), material("PT950")]
    assert profile.works(gone) == (), "a centre the catalog no longer uses: nothing, not everything"
    names = [type(e).__name__ for e in profile.collect_events()]
    assert names == ["Started", "WorkCentresDeclared", "MaterialsDeclared", "MaterialsDeclared"]


def test_unknown_work_centres_and_too_many_are_refused() -> None:
    profile = OperatorProfile.start("olga", OLGA)
    refusal = profile.declare_work_centres(["CASTING-AU", "BENCH-9"], KNOWN, OLGA)
    assert refusal is not None and refusal.code is Refused.INVALID and "work centre BENCH-9" in refusal.reason
    many = [material(f"M{i}", f"C{i}") for i in range(40)]
    refusal = profile.declare_work_centres([f"C{i}" for i in range(33)], many, OLGA)
    assert refusal is not None and refusal.code is Refused.INVALID and "at most 32" in refusal.reason
    refusal = profile.declare_work_centres(["CASTING-AU"], KNOWN, Actor(Role.SELLER, "sam"))
    assert refusal is not None and refusal.code is Refused.FORBIDDEN
    assert profile.work_centres == ()


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
