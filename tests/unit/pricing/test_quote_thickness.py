"""The quote with the wall-thickness analysis on: each metal's minimum wall, what is recorded, and what is
rejected (pricing.quote's THIN_SHARE), on generated rings of known band and prong."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest
import trimesh

from orders_core.contracts import Material, Quote
from orders_core.values import MIN_WALL_OTHERWISE
from pricing.limits import Deadline
from pricing.quote import quote_for
from pricing.rejections import Reason, Rejection
from tests.unit.pricing.solids import GOLD, LABOUR, SHA, SILVER, binary_stl, ring

PLATINUM = Material(code="PT950", name="Platinum 950", density_g_cm3=20.7, price_per_gram_minor=5200)
THICKNESSES = [0.3, 0.5, 0.7, 1.0]


def outcome(triangles: np.ndarray, material: Material, deadline: object = None) -> Quote | Rejection:
    return quote_for(
        binary_stl(triangles),
        "stl",
        material=material,
        labour_rates=LABOUR,
        quantity=1,
        currency="EUR",
        model_sha256=SHA,
        deadline=deadline,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("material", "expected"),
    [
        (GOLD, 0.6),
        (SILVER, 0.8),
        (PLATINUM, 0.5),
        (msgspec.structs.replace(GOLD, code="XX1"), MIN_WALL_OTHERWISE),
    ],
    ids=["gold", "silver", "platinum", "unknown"],
)
def test_each_metal_family_has_a_minimum_wall(material: Material, expected: float) -> None:
    assert material.minimum_wall_mm == expected
    assert msgspec.structs.replace(material, min_wall_mm=1.2).minimum_wall_mm == 1.2


def test_a_material_stored_before_the_minimum_wall_decodes_to_its_family_default() -> None:
    stored = {
        "code": "AG925",
        "name": "Sterling silver 925",
        "density_g_cm3": 10.4,
        "price_per_gram_minor": 160,
    }
    material = msgspec.convert(stored, Material)
    assert material.min_wall_mm is None and material.minimum_wall_mm == 0.8


@pytest.mark.parametrize("band", THICKNESSES)
@pytest.mark.parametrize("prong", THICKNESSES)
@pytest.mark.parametrize("material", [GOLD, SILVER], ids=["gold", "silver"])
def test_rings_are_rejected_exactly_where_the_minimum_says(
    band: float, prong: float, material: Material
) -> None:
    result = outcome(ring(band, prong), material)
    minimum = material.minimum_wall_mm
    if band >= minimum and prong >= minimum:
        assert isinstance(result, Quote), result
        wall = result.figures.wall
        assert wall is not None and wall.reliable and wall.min_wall_mm == minimum
        assert wall.area_below_mm2 == 0 and wall.share_below == 0
        assert wall.minimum_mm == pytest.approx(min(band, prong), abs=2e-3)
        assert wall.p1_mm >= wall.minimum_mm
        return
    assert isinstance(result, Rejection), result
    assert result.reason is Reason.TOO_THIN
    if band >= minimum:  # only the prong: the customer is told how thin, how much, and where
        assert f"the thinnest {prong:.2f} mm" in result.detail
        assert f"under the {minimum:g} mm" in result.detail
        assert f"x {9.0 + band:.1f}" in result.detail or f"x {9.0 + band - 0.01:.2f}" in result.detail
        assert f"to {9.0 + band + 5.0:.2f}" in result.detail


def test_a_faulty_surface_is_priced_with_its_figures_marked_unreliable() -> None:
    """Two 0.4 mm plates overlapping without being joined: each is a closed shell, so the model passes
    the closure check, and its mean wall passes too; the analysis sees the buried faces and must not
    reject a model on figures it cannot trust."""
    a = trimesh.creation.box(extents=(10, 10, 0.4))
    b = trimesh.creation.box(extents=(10, 10, 0.4))
    b.apply_translation((3.0, 3.0, 0.2))
    result = outcome(np.concatenate([a.triangles, b.triangles]), GOLD)
    assert isinstance(result, Quote), result
    wall = result.figures.wall
    assert wall is not None and not wall.reliable and wall.unreliable_share > 0.01


class _ExpiresAfter:
    """A deadline that passes at its n-th check: the quote checks once more after the analysis."""

    def __init__(self, checks: int) -> None:
        self.left = checks

    def passed(self) -> bool:
        self.left -= 1
        return self.left < 0


def test_the_time_limit_holds_with_the_analysis_on() -> None:
    checks = 3  # after the read, after the measures, after the closure and solidity checks
    assert isinstance(outcome(ring(1.0, 1.0), GOLD, _ExpiresAfter(checks + 1)), Quote)
    late = outcome(ring(1.0, 1.0), GOLD, _ExpiresAfter(checks))
    assert isinstance(late, Rejection) and late.reason is Reason.TIME_LIMIT
    assert isinstance(outcome(ring(1.0, 1.0), GOLD, Deadline.after(60)), Quote)
