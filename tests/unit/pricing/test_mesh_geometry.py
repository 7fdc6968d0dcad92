"""Volumes, areas and closure of generated solids against their analytic values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pricing import geometry
from pricing.geometry import defective_edges, figures_of, vertex_ids
from pricing.meshes import load_triangles
from tests.unit.pricing.solids import binary_stl, box, icosphere, inradius, torus, torus_volume

sizes = st.floats(min_value=0.1, max_value=90.0)


@given(x=sizes, y=sizes, z=sizes)
def test_box_volume_and_area_are_exact(x: float, y: float, z: float) -> None:
    figures = figures_of(box(x, y, z), density_g_cm3=10.0)
    assert figures.volume_mm3 == pytest.approx(x * y * z, rel=1e-12)
    assert figures.area_mm2 == pytest.approx(2 * (x * y + y * z + z * x), rel=1e-12)
    assert figures.bbox_mm == pytest.approx((x, y, z), rel=1e-12)
    assert figures.mass_g == pytest.approx(x * y * z / 1000 * 10.0, rel=1e-12)
    assert figures.triangle_count == 12


@settings(max_examples=30, deadline=None)
@given(radius=st.floats(min_value=0.5, max_value=50.0), subdivisions=st.integers(min_value=1, max_value=5))
def test_sphere_volume_lies_between_its_inner_and_outer_ball(radius: float, subdivisions: int) -> None:
    # An inscribed convex polyhedron holds the ball touching its nearest face and sits inside the sphere
    # through its vertices, so its volume and area are bracketed by both balls' analytic values.
    triangles = icosphere(radius, subdivisions)
    inner = inradius(triangles)
    figures = figures_of(triangles, density_g_cm3=1.0)
    assert 4 / 3 * math.pi * inner**3 * (1 - 1e-12) <= figures.volume_mm3 <= 4 / 3 * math.pi * radius**3
    assert 4 * math.pi * inner**2 * (1 - 1e-12) <= figures.area_mm2 <= 4 * math.pi * radius**2
    assert defective_edges(triangles).count == 0


def test_fine_sphere_volume_is_close_to_the_ball() -> None:
    figures = figures_of(icosphere(10.0, 6), density_g_cm3=1.0)
    assert figures.volume_mm3 == pytest.approx(4 / 3 * math.pi * 1000, rel=1e-3)
    assert figures.area_mm2 == pytest.approx(4 * math.pi * 100, rel=1e-3)


@settings(max_examples=40, deadline=None)
@given(
    major=st.floats(min_value=2.0, max_value=40.0),
    ratio=st.floats(min_value=0.05, max_value=0.9),
    around=st.integers(min_value=3, max_value=200),
    across=st.integers(min_value=3, max_value=60),
)
def test_torus_volume_matches_its_polyhedral_pappus_value(
    major: float, ratio: float, around: int, across: int
) -> None:
    triangles = torus(major, major * ratio, around, across)
    figures = figures_of(triangles, density_g_cm3=1.0)
    assert figures.volume_mm3 == pytest.approx(torus_volume(major, major * ratio, around, across), rel=1e-9)
    assert defective_edges(triangles).count == 0


def test_fine_torus_volume_is_close_to_the_smooth_torus() -> None:
    figures = figures_of(torus(20.0, 3.0, 400, 100), density_g_cm3=1.0)
    assert figures.volume_mm3 == pytest.approx(2 * math.pi**2 * 20.0 * 3.0**2, rel=1e-3)
    assert figures.area_mm2 == pytest.approx(4 * math.pi**2 * 20.0 * 3.0, rel=1e-3)


def test_inverted_winding_gives_negative_volume() -> None:
    figures = figures_of(box(2, 3, 4)[:, ::-1], density_g_cm3=1.0)
    assert figures.volume_mm3 == pytest.approx(-24.0)


def test_closed_box_has_no_defective_edges() -> None:
    assert defective_edges(box(1, 2, 3)).count == 0


def test_box_without_a_face_has_open_edges() -> None:
    # one face is two triangles; without them the four edges of the hole are each used once
    assert defective_edges(box(1, 2, 3)[2:]).count == 4


def test_box_with_one_triangle_flipped_has_inconsistent_edges() -> None:
    triangles = box(1, 2, 3)
    triangles[0] = triangles[0, ::-1]
    assert defective_edges(triangles).count == 3


def test_edge_shared_by_three_faces_is_defective() -> None:
    triangles = box(1, 1, 1)
    extra = np.array([[triangles[0, 0], triangles[0, 1], [5.0, 5.0, 5.0]]])
    assert defective_edges(np.concatenate([triangles, extra])).count > 0


def test_collapsed_triangles_are_ignored() -> None:
    triangles = box(1, 1, 1)
    sliver = np.array([[triangles[0, 0], triangles[0, 0], triangles[0, 1]]])
    assert defective_edges(np.concatenate([triangles, sliver])).count == 0


def test_negative_zero_and_zero_are_one_vertex_once_loaded() -> None:
    triangles = box(1, 1, 1)
    triangles[0][triangles[0] == 0.0] = -0.0
    loaded = load_triangles(binary_stl(triangles), "stl")
    assert isinstance(loaded, np.ndarray)
    assert defective_edges(loaded).count == 0


def test_vertex_ids_merge_exactly_equal_corners() -> None:
    corners = np.array([[0, 0, 0], [1, 0, 0], [0, 0, 0], [1, 0, 1e-9], [1, 0, 0]], np.float32)
    ids, count = vertex_ids(corners)
    assert count == 3
    assert ids[0] == ids[2] and ids[1] == ids[4] and len({ids[0], ids[1], ids[3]}) == 3


def test_hash_collisions_fall_back_to_an_exact_merge(monkeypatch: pytest.MonkeyPatch) -> None:
    # a zero multiplier sends every corner to one of few hashes, so the collision check must catch it
    monkeypatch.setattr(geometry, "_MIX", np.uint64(0))
    triangles = torus(10.0, 2.0, 12, 8)
    ids, count = vertex_ids(triangles.reshape(-1, 3))
    assert count == 12 * 8
    assert defective_edges(triangles).count == 0
    assert len(np.unique(ids)) == count
