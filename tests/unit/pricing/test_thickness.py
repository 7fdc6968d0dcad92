"""Local wall thickness (pricing.thickness): solids of known wall, invariance, and bad input.

Tolerances: Embree works in float32 on coordinates centred on the model's box, so a wall comes back within
about 1e-6 of the model's size; 1e-4 relative plus 1e-5 mm leaves room. A tube is made of flat facets, so
its measured wall is off by up to the sagitta of a facet, r (1 - cos(pi / n)), on each side: with 512
sections and radii up to 10 mm, 4e-4 mm; its tolerance is that plus 0.1% of the wall.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
import trimesh
from hypothesis import given, settings
from hypothesis import strategies as st

from pricing.thickness import UNRELIABLE_SHARE, describe_box, wall_thickness
from tests.unit.pricing.solids import ring

Array = npt.NDArray[np.float64]

REL, ABS = 1e-4, 1e-5


def close(measured: float, expected: float, rel: float = REL, abs_: float = ABS) -> bool:
    return math.isclose(measured, expected, rel_tol=rel, abs_tol=abs_)


def plate(width: float, depth: float, wall: float) -> Array:
    """A flat plate, its large faces split into a grid so the 1st percentile sits on them."""
    mesh = trimesh.creation.box(extents=(width, depth, wall)).subdivide().subdivide()
    return np.asarray(mesh.triangles, np.float64)


def tube(inner: float, wall: float, height: float, sections: int = 512) -> Array:
    mesh = trimesh.creation.annulus(r_min=inner, r_max=inner + wall, height=height, sections=sections)
    return np.asarray(mesh.triangles, np.float64)


def rotation(q: tuple[float, float, float, float]) -> Array:
    """The rotation of a (not necessarily unit) quaternion: uniform over rotations for Gaussian q."""
    w, x, y, z = np.asarray(q) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


walls = st.floats(0.2, 3.0)
sizes = st.floats(5.0, 30.0)
quaternions = st.tuples(*[st.floats(-1.0, 1.0) for _ in range(4)]).filter(
    lambda q: float(np.linalg.norm(q)) > 0.1
)


@settings(max_examples=40, deadline=None)
@given(wall=walls, width=sizes, depth=sizes)
def test_a_plate_gives_its_wall(wall: float, width: float, depth: float) -> None:
    result = wall_thickness(plate(width, depth, wall), min_wall_mm=wall * 1.01)
    assert result.reliable and result.unreliable_share == 0
    assert close(result.minimum_mm, wall)
    assert close(result.p1_mm, wall)
    # the two large faces, and nothing else, are below a minimum just over the wall
    large = 2 * width * depth
    assert close(result.share_below, large / (large + 2 * wall * (width + depth)), rel=1e-6)
    assert result.below_low is not None and result.below_high is not None
    assert np.allclose(result.below_low, (-width / 2, -depth / 2, -wall / 2), atol=1e-5)
    assert np.allclose(result.below_high, (width / 2, depth / 2, wall / 2), atol=1e-5)


@settings(max_examples=40, deadline=None)
@given(wall=walls, inner=st.floats(2.0, 7.0), extra=st.floats(1.0, 5.0))
def test_a_tube_gives_its_wall(wall: float, inner: float, extra: float) -> None:
    result = wall_thickness(tube(inner, wall, wall + extra), min_wall_mm=wall / 2)
    assert result.reliable and result.unreliable_share == 0
    sagitta = 2 * (inner + wall) * (1 - math.cos(math.pi / 512))
    assert close(result.minimum_mm, wall, rel=1e-3, abs_=sagitta)
    assert close(result.p1_mm, wall, rel=1e-3, abs_=sagitta)
    assert result.area_below_mm2 == 0 and result.below_low is None


SOLID = ring(0.7, 0.5)
BASE = wall_thickness(SOLID, min_wall_mm=0.6)


@settings(max_examples=25, deadline=None)
@given(q=quaternions, shift=st.tuples(*[st.floats(-500.0, 500.0) for _ in range(3)]))
def test_rotation_and_translation_change_nothing(
    q: tuple[float, float, float, float], shift: tuple[float, float, float]
) -> None:
    moved = SOLID @ rotation(q).T + np.asarray(shift)
    result = wall_thickness(moved, min_wall_mm=0.6)
    assert result.reliable
    # the far placement costs float32 precision in Embree only relative to the model's size (it is
    # centred first); the thinnest facet's reading moves by float noise
    assert close(result.minimum_mm, BASE.minimum_mm, rel=1e-3)
    assert close(result.p1_mm, BASE.p1_mm, rel=1e-3)
    assert close(result.share_below, BASE.share_below, rel=1e-3)


@settings(max_examples=25, deadline=None)
@given(scale=st.floats(0.2, 5.0))
def test_uniform_scale_scales_the_wall(scale: float) -> None:
    result = wall_thickness(SOLID * scale, min_wall_mm=0.6 * scale)
    assert close(result.minimum_mm, BASE.minimum_mm * scale, rel=1e-3)
    assert close(result.p1_mm, BASE.p1_mm * scale, rel=1e-3)
    assert close(result.area_below_mm2, BASE.area_below_mm2 * scale**2, rel=1e-3)
    assert close(result.share_below, BASE.share_below, rel=1e-3)


def test_inverted_normals_are_unreliable() -> None:
    result = wall_thickness(SOLID[:, ::-1], min_wall_mm=0.6)
    assert not result.reliable
    assert result.unreliable_share > 0.5


def test_overlapping_shells_are_unreliable() -> None:
    """Two boxes that overlap without being joined: each face inside the other box has a plausible
    inward wall, and only its outward ray shows it is not on the outer skin."""
    a = trimesh.creation.box(extents=(2, 2, 2))
    b = trimesh.creation.box(extents=(2, 2, 2))
    b.apply_translation((1.0, 0.5, 0.7))
    result = wall_thickness(np.concatenate([a.triangles, b.triangles]), min_wall_mm=0.6)
    assert not result.reliable
    assert result.unreliable_share > UNRELIABLE_SHARE


def test_an_open_mesh_is_unreliable() -> None:
    box = trimesh.creation.box(extents=(2, 2, 2))
    open_box = box.triangles[box.face_normals[:, 2] < 0.5]  # the top removed
    result = wall_thickness(open_box, min_wall_mm=0.6)
    assert not result.reliable  # the bottom's rays leave through the hole


def test_degenerate_triangles_cast_no_ray() -> None:
    box = np.asarray(trimesh.creation.box(extents=(2, 2, 2)).triangles, np.float64)
    flat = np.repeat(box[:1, :1], 3, axis=1)  # a triangle with its three corners at one point
    result = wall_thickness(np.concatenate([box, flat]), min_wall_mm=0.6)
    assert result.rays == 2 * len(box) and result.reliable and close(result.minimum_mm, 2.0)


def test_an_empty_model_measures_nothing() -> None:
    result = wall_thickness(np.zeros((0, 3, 3)), min_wall_mm=0.6)
    assert result.rays == 0 and not result.reliable and math.isnan(result.minimum_mm)


@pytest.mark.parametrize("band", [0.3, 0.5, 0.7, 1.0])
@pytest.mark.parametrize("prong", [0.3, 0.5, 0.7, 1.0])
@pytest.mark.parametrize("min_wall", [0.6, 0.8], ids=["gold", "silver"])
def test_rings_are_thin_exactly_where_the_minimum_says(band: float, prong: float, min_wall: float) -> None:
    result = wall_thickness(ring(band, prong), min_wall_mm=min_wall)
    assert result.reliable and result.unreliable_share == 0
    # the thinnest wall is the thinner part, within the facets' sagitta (256-sided band up to 10 mm
    # across, 1.5e-3 mm for both sides; 64-sided prong, 1.2e-3 of its diameter)
    assert close(result.minimum_mm, min(band, prong), abs_=2e-3)
    if band >= min_wall and prong >= min_wall:
        assert result.area_below_mm2 == 0 and result.below_low is None
        return
    assert result.below_low is not None and result.below_high is not None
    low, high = np.asarray(result.below_low), np.asarray(result.below_high)
    if band < min_wall:  # the whole band is thin: the box is the ring's
        assert np.allclose(low[:2], -(9.0 + band), atol=1e-3)
        assert result.share_below > 0.5
    else:  # only the prong: its box, from the band's outside to its tip, as wide as it is thick
        assert close(low[0], 9.0 + band, abs_=0.01) and close(high[0], 9.0 + band + 5.0, abs_=1e-3)
        assert np.allclose(low[1:], -prong / 2, atol=1e-3)
        assert np.allclose(high[1:], prong / 2, atol=1e-3)
        assert "x" in describe_box(result.below_low, result.below_high)


def test_a_model_beyond_the_measured_limit_is_measured_on_a_seeded_sample() -> None:
    full_mesh = trimesh.Trimesh(*trimesh.remesh.subdivide_to_size(*_indexed(ring(1.0, 0.3)), max_edge=0.3))
    soup = np.asarray(full_mesh.triangles, np.float64)
    every = wall_thickness(soup, 0.6)
    sampled = wall_thickness(soup, 0.6, max_measured=len(soup) // 5)
    assert every.measured_share == 1.0 and 0.18 < sampled.measured_share < 0.22
    assert sampled.rays < every.rays / 4
    assert sampled == wall_thickness(soup, 0.6, max_measured=len(soup) // 5)  # the same sample each time
    # estimates of the whole: the prong's share of the surface, its area, where it is, and no fault
    assert (
        every.share_below > 0.005 and abs(sampled.share_below - every.share_below) < 0.05 * every.share_below
    )
    assert abs(sampled.area_below_mm2 - every.area_below_mm2) < 0.05 * every.area_below_mm2
    assert sampled.unreliable_share == every.unreliable_share == 0
    assert close(sampled.minimum_mm, every.minimum_mm, abs_=2e-3)
    assert sampled.below_low is not None and every.below_low is not None
    assert np.allclose(sampled.below_low, every.below_low, atol=0.05)
    assert sampled.below_high is not None and every.below_high is not None
    assert np.allclose(sampled.below_high, every.below_high, atol=0.05)


def _indexed(soup: Array) -> tuple[Array, Array]:
    mesh = trimesh.Trimesh(**trimesh.triangles.to_kwargs(soup))
    mesh.merge_vertices()
    return np.asarray(mesh.vertices), np.asarray(mesh.faces)
