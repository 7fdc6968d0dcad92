"""The fast 3MF reader: it reads what it claims to, and leaves everything else to the general reader."""

from __future__ import annotations

import numpy as np
import pytest

from pricing import three_mf
from pricing.geometry import defective_edges, figures_of
from pricing.limits import Limits
from pricing.meshes import load_triangles
from tests.unit.pricing.solids import box, exported, package, three_mf_file, three_mf_model, torus

TORUS = torus(12.0, 3.0, 40, 16)


def figures(data: bytes) -> tuple[float, float, tuple[float, float, float]]:
    triangles = load_triangles(data, "3mf", Limits())
    assert isinstance(triangles, np.ndarray), triangles
    assert defective_edges(triangles).count == 0
    result = figures_of(triangles, 1.0)
    return result.volume_mm3, result.area_mm2, result.bbox_mm


def plain(model: str) -> np.ndarray | None:
    return three_mf.mesh_triangles(model.encode())


def test_a_plain_mesh_is_read_without_trimesh() -> None:
    assert plain(three_mf_model(TORUS)) is not None


def test_trimesh_written_3mf_is_read_without_trimesh() -> None:
    part = three_mf.model_part(exported(TORUS, "3mf"), Limits())
    assert isinstance(part, tuple)
    assert three_mf.mesh_triangles(part[0]) is not None


def test_fast_and_general_readers_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    data = three_mf_file(TORUS)
    fast = figures(data)
    monkeypatch.setattr(three_mf, "mesh_triangles", lambda model: None)
    volume, area, bbox = figures(data)
    assert (volume, area, *bbox) == pytest.approx((fast[0], fast[1], *fast[2]), rel=1e-12)


def test_exponent_notation_is_read() -> None:
    triangles = plain(three_mf_model(TORUS, number="{:.17e}"))
    assert triangles is not None
    assert np.array_equal(triangles, TORUS)


def test_a_build_transform_moves_and_turns_the_mesh() -> None:
    # a quarter turn about z, then a shift: the same solid, elsewhere
    volume, area, (x, y, z) = figures(three_mf_file(box(10, 20, 30), transform="0 1 0 -1 0 0 0 0 1 5 6 7"))
    assert (volume, area) == pytest.approx((6000.0, 2200.0))
    assert (x, y, z) == pytest.approx((20.0, 10.0, 30.0))


def test_a_mirroring_transform_keeps_the_solid_outside_out() -> None:
    volume, _, _ = figures(three_mf_file(box(10, 20, 30), transform="-1 0 0 0 1 0 0 0 1 0 0 0"))
    assert volume == pytest.approx(6000.0)


def test_an_unexpected_attribute_leaves_the_model_to_the_general_reader() -> None:
    model = three_mf_model(box(10, 20, 30)).replace("<vertex ", '<vertex foo="1" ', 1)
    assert plain(model) is None


def test_property_indices_leave_the_model_to_the_general_reader() -> None:
    model = three_mf_model(box(10, 20, 30)).replace("<triangle ", '<triangle pid="1" p1="0" ', 1)
    assert plain(model) is None
    assert figures(package({"3D/3dmodel.model": model.encode()}))[0] == pytest.approx(6000.0)


def test_components_are_read_by_the_general_reader() -> None:
    model = three_mf_model(box(10, 20, 30)).replace(
        '</resources><build><item objectid="1"/>',
        '<object id="2" type="model"><components>'
        '<component objectid="1" transform="1 0 0 0 1 0 0 0 1 50 0 0"/>'
        '</components></object></resources><build><item objectid="2"/>',
    )
    assert plain(model) is None
    volume, _, bbox = figures(package({"3D/3dmodel.model": model.encode()}))
    assert volume == pytest.approx(6000.0)
    assert bbox == pytest.approx((10.0, 20.0, 30.0))


def test_face_indices_out_of_range_are_not_read() -> None:
    model = three_mf_model(box(10, 20, 30)).replace('v1="0"', 'v1="99"', 1)
    assert plain(model) is None
    result = load_triangles(package({"3D/3dmodel.model": model.encode()}), "3mf", Limits())
    assert not isinstance(result, np.ndarray)
