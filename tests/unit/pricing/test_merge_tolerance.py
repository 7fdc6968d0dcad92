"""Corners merged within a tolerance relative to the model's size: float noise of CAD exports never opens
a hole that is not there, a real gap of a tenth of a millimetre still does, and the report says where."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from hypothesis import given, settings
from hypothesis import strategies as st

from pricing.geometry import MERGE_MAX_MM, defective_edges, merge_tolerance
from pricing.rejections import Rejection
from tests.unit.pricing.solids import Array, binary_stl, box, rotation, torus
from tests.unit.pricing.test_quote_rejections import outcome


def noisy(triangles: Array, amplitude: float, seed: int) -> Array:
    """Every corner copy moved on its own by up to `amplitude` per axis, as a CAD exporter writes shared
    corners (0.0 beside -2.7e-16, or micrometres apart)."""
    rng = np.random.default_rng(seed)
    return triangles + rng.uniform(-amplitude, amplitude, triangles.shape)


@settings(max_examples=40, deadline=None)
@given(
    major=st.floats(min_value=3.0, max_value=40.0),
    ratio=st.floats(min_value=0.2, max_value=0.6),
    share=st.floats(min_value=1e-6, max_value=0.4),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_float_noise_below_the_tolerance_leaves_a_solid_closed(
    major: float, ratio: float, share: float, seed: int
) -> None:
    triangles = torus(major, major * ratio, 48, 16)
    # two copies each moved by under half the tolerance are closer than it on every axis
    shaken = noisy(triangles, share * merge_tolerance(triangles), seed)
    assert defective_edges(shaken).count == 0


def test_signed_zero_and_tiny_offsets_merge() -> None:
    triangles = box(10, 10, 10)
    triangles[0][triangles[0] == 0.0] = -2.7e-16
    triangles[1][triangles[1] == 10.0] = 10.0 + 1e-6
    assert defective_edges(triangles).count == 0


@settings(max_examples=30, deadline=None)
@given(size=st.floats(min_value=2.0, max_value=100.0), seed=st.integers(min_value=0, max_value=1000))
def test_a_tenth_of_a_millimetre_gap_stays_open_and_is_located(size: float, seed: int) -> None:
    triangles = noisy(box(size, size, size), 1e-4, seed)
    top = np.all(np.abs(triangles[:, :, 2] - size) < 0.01, axis=1)
    assert top.sum() == 2
    triangles[top, :, 2] += 0.1  # the lid lifted off: its four edges and the rim's four are open
    found = defective_edges(triangles)
    assert found.count == 8
    assert found.tolerance_mm <= MERGE_MAX_MM
    assert found.low is not None and found.high is not None
    assert found.low[2] > size - 0.01 and found.high[2] < size + 0.11
    assert found.low[0] < 0.01 and found.high[0] > size - 0.01


@settings(max_examples=20, deadline=None)
@given(
    shift=st.tuples(*[st.floats(min_value=-500.0, max_value=500.0)] * 3),
    quaternion=st.tuples(*[st.floats(min_value=-1.0, max_value=1.0)] * 4).filter(
        lambda q: sum(c * c for c in q) > 0.1
    ),
    scale=st.floats(min_value=0.2, max_value=5.0),
    seed=st.integers(min_value=0, max_value=1000),
)
def test_moving_turning_and_scaling_change_nothing(
    shift: tuple[float, float, float],
    quaternion: tuple[float, float, float, float],
    scale: float,
    seed: int,
) -> None:
    placed = (torus(10.0, 3.0, 40, 12) * scale) @ rotation(*quaternion).T + np.asarray(shift)
    assert defective_edges(noisy(placed, 0.3 * merge_tolerance(placed), seed)).count == 0
    # the tolerance follows the model's size, not where it stands
    moved = placed + np.asarray(shift)
    assert merge_tolerance(moved) == pytest.approx(merge_tolerance(placed), rel=1e-6)
    open_box = box(8, 8, 8)[2:] * scale @ rotation(*quaternion).T + np.asarray(shift)
    assert defective_edges(open_box).count == 4


def test_a_cad_export_with_noisy_corners_is_priced_and_an_open_one_is_told_where() -> None:
    triangles = noisy(torus(12.0, 3.0, 64, 24), 1e-4, 7).astype(np.float32)
    priced = outcome(binary_stl(triangles))
    assert not isinstance(priced, Rejection), priced
    gap = box(10, 10, 10)
    gap[np.all(np.abs(gap[:, :, 2] - 10) < 0.01, axis=1), :, 2] += 0.1
    refused = outcome(binary_stl(gap))
    assert isinstance(refused, Rejection)
    assert "8 of its edges" in refused.detail and "z 10.00 to 10.10" in refused.detail, refused.detail


def test_a_fine_mesh_keeps_its_own_neighbouring_corners_apart() -> None:
    # 80 mm long, so MERGE_RELATIVE of its diagonal is 20 um; but its rim's corners are 31 um apart, so
    # the tolerance follows its short edges instead, and noise still merges while corners do not
    rod = trimesh.creation.cylinder(radius=0.5, height=80.0, sections=100)
    triangles = np.asarray(rod.vertices[rod.faces], np.float64)
    tolerance = merge_tolerance(triangles)
    assert tolerance < 0.1 * 0.032
    assert defective_edges(noisy(triangles, 0.3 * tolerance, 3)).count == 0
