"""The price: its lines, its rounding, and what it must and must not depend on."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec.structs import replace

from orders_core.contracts import Material, MeshFigures, Quote
from pricing.geometry import figures_of
from pricing.quote import METAL, price, quote_for
from tests.unit.pricing.solids import GOLD, LABOUR, SHA, SILVER, binary_stl, box, rotation, torus


def quote(data: bytes, material: Material = GOLD, quantity: int = 1) -> Quote:
    result = quote_for(
        data,
        "stl",
        material=material,
        labour_rates=LABOUR,
        quantity=quantity,
        currency="EUR",
        model_sha256=SHA,
    )
    assert isinstance(result, Quote), result
    return result


def priced(figures: MeshFigures, material: Material = GOLD, quantity: int = 1) -> Quote:
    return price(
        figures, material=material, labour_rates=LABOUR, quantity=quantity, currency="EUR", model_sha256=SHA
    )


def test_a_gold_cube_has_the_expected_breakdown() -> None:
    # 10 mm cube: 1 cm3 of 15.5 g/cm3 gold at 87.00/g + 5% loss; 6 cm2 finishing at 0.90/cm2
    result = quote(binary_stl(box(10, 10, 10)), quantity=2)
    amounts = {line.code: line.amount_minor for line in result.lines}
    assert amounts == {METAL: 2 * 141593, "FINISHING": 2 * 540, "CASTING": 2 * 1500, "SETUP": 2500}
    assert result.total_minor == sum(amounts.values())
    assert result.figures.mass_g == pytest.approx(15.5)
    assert (result.model_sha256, result.material_code, result.quantity, result.currency) == (
        SHA,
        "AU750",
        2,
        "EUR",
    )


def test_lines_are_rounded_half_up_once_per_piece() -> None:
    # 1 g of a 1.00/g metal with 50 permille loss is 1.05 minor units: 1 per piece, 3 for three pieces
    material = Material(
        code="M", name="m", density_g_cm3=1.0, price_per_gram_minor=1, casting_loss_permille=50
    )
    figures = MeshFigures(volume_mm3=1000, area_mm2=0, mass_g=1.0, triangle_count=12, bbox_mm=(10, 10, 10))
    metal = next(line for line in priced(figures, material, quantity=3).lines if line.code == METAL)
    assert metal.amount_minor == 3
    lossless = replace(material, casting_loss_permille=0)
    half = MeshFigures(volume_mm3=2500, area_mm2=0, mass_g=2.5, triangle_count=12, bbox_mm=(1, 1, 1))
    rounded_up = next(line for line in priced(half, lossless).lines if line.code == METAL)
    assert rounded_up.amount_minor == 3  # 2.5 rounds up, not to the even 2


def test_amounts_are_integers() -> None:
    result = quote(binary_stl(torus(12.0, 2.5, 64, 24)), SILVER, quantity=3)
    assert all(type(line.amount_minor) is int for line in result.lines)
    assert type(result.total_minor) is int


def test_quantity_below_one_is_a_fault() -> None:
    with pytest.raises(ValueError, match="quantity"):
        priced(figures_of(box(5, 5, 5), GOLD.density_g_cm3), quantity=0)


masses = st.floats(min_value=0.01, max_value=2000.0)
areas = st.floats(min_value=1.0, max_value=50000.0)


@given(lighter=masses, heavier=masses, area=areas, quantity=st.integers(1, 50))
def test_price_never_falls_as_mass_rises(lighter: float, heavier: float, area: float, quantity: int) -> None:
    lighter, heavier = sorted((lighter, heavier))

    def total(mass: float) -> int:
        figures = MeshFigures(volume_mm3=1.0, area_mm2=area, mass_g=mass, triangle_count=4, bbox_mm=(1, 1, 1))
        return priced(figures, quantity=quantity).total_minor

    assert total(lighter) <= total(heavier)


@settings(max_examples=30, deadline=None)
@given(density=st.floats(min_value=1.0, max_value=20.0), more=st.floats(min_value=0.0, max_value=10.0))
def test_a_denser_metal_costs_no_less(density: float, more: float) -> None:
    triangles = torus(12.0, 2.5, 32, 12)
    light = replace(GOLD, density_g_cm3=density)
    heavy = replace(GOLD, density_g_cm3=min(density + more, 30.0))
    assert (
        priced(figures_of(triangles, light.density_g_cm3), light).total_minor
        <= priced(figures_of(triangles, heavy.density_g_cm3), heavy).total_minor
    )


@settings(max_examples=30, deadline=None)
@given(scale=st.floats(min_value=0.3, max_value=3.0), grow=st.floats(min_value=1.0, max_value=2.0))
def test_a_bigger_model_costs_no_less(scale: float, grow: float) -> None:
    triangles = torus(12.0, 2.5, 32, 12) * scale
    small = priced(figures_of(triangles, GOLD.density_g_cm3))
    large = priced(figures_of(triangles * grow, GOLD.density_g_cm3))
    assert small.total_minor <= large.total_minor


@given(quantity=st.integers(min_value=1, max_value=999), mass=masses, area=areas)
def test_one_more_piece_costs_more(quantity: int, mass: float, area: float) -> None:
    figures = MeshFigures(volume_mm3=1.0, area_mm2=area, mass_g=mass, triangle_count=4, bbox_mm=(1, 1, 1))
    assert priced(figures, quantity=quantity).total_minor < priced(figures, quantity=quantity + 1).total_minor


coordinates = st.floats(min_value=-500.0, max_value=500.0)
quaternions = st.tuples(*[st.floats(min_value=-1.0, max_value=1.0)] * 4).filter(
    lambda q: sum(c * c for c in q) > 1e-3
)


@settings(max_examples=60, deadline=None)
@given(turn=quaternions, shift=st.tuples(coordinates, coordinates, coordinates), quantity=st.integers(1, 20))
def test_moving_or_turning_the_model_does_not_change_the_price(
    turn: tuple[float, float, float, float], shift: tuple[float, float, float], quantity: int
) -> None:
    triangles = torus(15.0, 3.0, 48, 16)
    moved = triangles @ rotation(*turn).T + np.array(shift)
    before = priced(figures_of(triangles, GOLD.density_g_cm3), quantity=quantity)
    after = priced(figures_of(moved, GOLD.density_g_cm3), quantity=quantity)
    assert after.figures.volume_mm3 == pytest.approx(before.figures.volume_mm3, rel=1e-9)
    assert after.figures.area_mm2 == pytest.approx(before.figures.area_mm2, rel=1e-9)
    # figures agree to float noise; a line may land on the other side of a half-unit only by that noise
    for old, new in zip(before.lines, after.lines, strict=True):
        assert abs(old.amount_minor - new.amount_minor) <= quantity


@settings(max_examples=20, deadline=None)
@given(turn=quaternions, shift=st.tuples(coordinates, coordinates, coordinates))
def test_moving_or_turning_a_stored_stl_keeps_the_price_within_a_unit_per_line(
    turn: tuple[float, float, float, float], shift: tuple[float, float, float]
) -> None:
    # STL stores float32, so a moved copy is rounded differently: the figures agree to about 1e-6
    triangles = torus(15.0, 3.0, 48, 16)
    moved = triangles @ rotation(*turn).T + np.array(shift)
    before, after = quote(binary_stl(triangles)), quote(binary_stl(moved))
    assert after.figures.volume_mm3 == pytest.approx(before.figures.volume_mm3, rel=1e-5)
    for old, new in zip(before.lines, after.lines, strict=True):
        assert abs(old.amount_minor - new.amount_minor) <= max(1, old.amount_minor // 10**5)
