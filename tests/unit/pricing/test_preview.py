"""The preview (pricing.preview): a GLB that parses back, within its triangle budget, red exactly where the
quote's own analysis found the wall below the material's minimum."""

from __future__ import annotations

import io
import json
import struct

import numpy as np
import pytest
import trimesh

from pricing.preview import AMBER, NEUTRAL, RED, UNMEASURED, colours, preview_glb, stored
from pricing.thickness import wall_thickness
from tests.unit.pricing.solids import ring, torus

GOLD_MIN = 0.6


def parsed(data: bytes) -> trimesh.Trimesh:
    scene = trimesh.load(io.BytesIO(data), file_type="glb", process=False)
    meshes = list(scene.geometry.values())
    assert len(meshes) == 1
    mesh = meshes[0]
    assert isinstance(mesh, trimesh.Trimesh)
    return mesh


def document(data: bytes) -> dict[str, object]:
    magic, version, total = struct.unpack_from("<III", data)
    assert (magic, version, total) == (0x46546C67, 2, len(data))
    length, kind = struct.unpack_from("<II", data, 12)
    assert kind == 0x4E4F534A
    loaded: dict[str, object] = json.loads(data[20 : 20 + length])
    return loaded


def rgb(mesh: trimesh.Trimesh) -> np.ndarray:
    return np.asarray(mesh.visual.vertex_colors)[:, :3]


def test_a_thin_prong_is_red_at_the_prong_and_nowhere_else() -> None:
    triangles = ring(1.0, 0.3)
    thickness = wall_thickness(triangles, GOLD_MIN)
    assert thickness.per_triangle is not None and len(thickness.per_triangle) == len(triangles)
    mesh = parsed(preview_glb(triangles, thickness.per_triangle, GOLD_MIN))
    assert len(mesh.faces) == len(triangles)  # a small model is kept whole
    red = (rgb(mesh) == stored(RED)).all(axis=1)
    assert red.any()
    # the red vertices lie in the box the quote reports as thin (the prong: x 10 to 15, 0.3 mm across)
    assert thickness.below_low is not None and thickness.below_high is not None
    low, high = np.array(thickness.below_low), np.array(thickness.below_high)
    points = mesh.vertices[red]
    assert (points >= low - 1e-4).all() and (points <= high + 1e-4).all()
    # and the wall attribute says why
    wall = mesh.vertex_attributes["_WALL_MM"]
    assert np.nanmin(wall) == pytest.approx(0.3, abs=2e-3)
    assert (wall[red] < GOLD_MIN).all()


def test_a_sound_ring_has_no_red() -> None:
    triangles = ring(1.0, 1.0)
    thickness = wall_thickness(triangles, GOLD_MIN)
    assert thickness.per_triangle is not None
    mesh = parsed(preview_glb(triangles, thickness.per_triangle, GOLD_MIN))
    colour = rgb(mesh)
    assert not (colour == stored(RED)).all(axis=1).any()
    assert (colour == stored(NEUTRAL)).all(axis=1).any()


def test_a_large_model_is_simplified_to_the_budget_and_keeps_its_red() -> None:
    triangles = ring(1.0, 0.3)
    thickness = wall_thickness(triangles, GOLD_MIN)
    assert thickness.per_triangle is not None
    data = preview_glb(triangles, thickness.per_triangle, GOLD_MIN, budget=1000)
    mesh = parsed(data)
    assert len(mesh.faces) <= 1000
    red = (rgb(mesh) == stored(RED)).all(axis=1)
    assert red.any()
    assert thickness.below_low is not None and thickness.below_high is not None
    points = mesh.vertices[red]
    # the collapsed vertices stay on the prong (within a tenth of a millimetre of its box)
    assert (points >= np.array(thickness.below_low) - 0.1).all()
    assert (points <= np.array(thickness.below_high) + 0.1).all()


def test_a_big_torus_stays_within_the_default_budget() -> None:
    triangles = torus(12.0, 1.5, 400, 300)  # 240,000 triangles
    walls = np.full(len(triangles), 3.0, np.float32)
    data = preview_glb(triangles, walls, GOLD_MIN)
    mesh = parsed(data)
    assert 90_000 <= len(mesh.faces) <= 100_000
    assert len(data) < 3_000_000


def test_the_glb_declares_its_attributes() -> None:
    triangles = ring(1.0, 0.3)
    walls = np.full(len(triangles), np.nan, np.float32)
    data = preview_glb(triangles, walls, GOLD_MIN)
    gltf = document(data)
    primitive = gltf["meshes"][0]["primitives"][0]  # type: ignore[index]
    assert set(primitive["attributes"]) == {"POSITION", "COLOR_0", "_WALL_MM"}
    extras = gltf["nodes"][0]["extras"]  # type: ignore[index]
    assert extras == {"min_wall_mm": GOLD_MIN, "near_factor": 1.25, "model_triangles": len(triangles)}
    mesh = parsed(data)
    assert (rgb(mesh) == stored(UNMEASURED)).all()  # nothing measured: nothing claimed


def test_colours_against_the_minimum() -> None:
    walls = np.array([0.2, 0.6, 0.7, 0.75, 2.0, np.nan], np.float32)
    expected = [RED, AMBER, AMBER, NEUTRAL, NEUTRAL, UNMEASURED]
    assert [tuple(c) for c in colours(walls, 0.6)] == [stored(c) for c in expected]
    assert stored(RED) == (171, 5, 5) and stored((255, 255, 255)) == (255, 255, 255)


def test_walls_must_match_the_triangles() -> None:
    with pytest.raises(ValueError, match="walls"):
        preview_glb(ring(1.0, 1.0), np.zeros(3, np.float32), GOLD_MIN)
