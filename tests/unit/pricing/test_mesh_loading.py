"""Every format reads the same model to the same figures; bad files become readable rejections."""

from __future__ import annotations

import io
import struct
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from pricing import meshes, three_mf
from pricing.geometry import figures_of
from pricing.limits import Limits
from pricing.meshes import load_triangles
from pricing.rejections import Reason, Rejection
from tests.unit.pricing.solids import binary_stl, box, exported, package, textured_ply, three_mf_file

CUBOID = box(10.0, 20.0, 30.0) + np.array([5.0, -7.0, 2.0])

FORMATS: dict[str, tuple[str, Callable[[], bytes]]] = {
    "binary STL": ("stl", lambda: binary_stl(CUBOID)),
    "ASCII STL": ("stl", lambda: exported(CUBOID, "stl_ascii")),
    "OBJ": ("obj", lambda: exported(CUBOID, "obj")),
    "binary PLY": ("ply", lambda: exported(CUBOID, "ply")),
    "ASCII PLY naming a missing texture": ("ply", lambda: textured_ply(CUBOID)),
    "3MF in millimetres": ("3mf", lambda: three_mf_file(CUBOID)),
    "3MF in inches": ("3mf", lambda: three_mf_file(CUBOID / 25.4, "inch")),
    "3MF written by trimesh": ("3mf", lambda: exported(CUBOID, "3mf")),
    "GLB in metres": ("glb", lambda: exported(CUBOID / 1000.0, "glb")),
}


def loaded(data: bytes | Path, fmt: str, limits: Limits | None = None) -> np.ndarray:
    triangles = load_triangles(data, fmt, limits or Limits())
    assert not isinstance(triangles, Rejection), triangles
    return triangles


def rejected(data: bytes | Path, fmt: str, limits: Limits | None = None) -> Rejection:
    rejection = load_triangles(data, fmt, limits or Limits())
    assert isinstance(rejection, Rejection)
    assert rejection.detail
    return rejection


@pytest.mark.parametrize("name", FORMATS)
def test_every_format_reads_the_cuboid_to_the_same_figures(name: str) -> None:
    fmt, build = FORMATS[name]
    figures = figures_of(loaded(build(), fmt), density_g_cm3=10.0)
    assert figures.triangle_count == 12
    assert figures.volume_mm3 == pytest.approx(6000.0, rel=1e-6)
    assert figures.area_mm2 == pytest.approx(2200.0, rel=1e-6)
    assert figures.bbox_mm == pytest.approx((10.0, 20.0, 30.0), rel=1e-6)


@pytest.mark.parametrize(
    ("unit", "mm"),
    [
        ("micron", 0.001),
        ("millimeter", 1.0),
        ("centimeter", 10.0),
        ("inch", 25.4),
        ("foot", 304.8),
        ("meter", 1e3),
    ],
)
def test_3mf_units_are_converted_to_millimetres(unit: str, mm: float) -> None:
    triangles = loaded(three_mf_file(CUBOID / mm, unit), "3mf")
    assert figures_of(triangles, 1.0).bbox_mm == pytest.approx((10.0, 20.0, 30.0), rel=1e-9)


def test_a_path_reads_like_its_bytes(tmp_path: Path) -> None:
    path = tmp_path / "cuboid.stl"
    path.write_bytes(binary_stl(CUBOID))
    assert np.array_equal(loaded(path, "stl"), loaded(path.read_bytes(), "stl"))


def test_binary_stl_is_read_in_chunks_like_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "cuboid.stl"
    path.write_bytes(binary_stl(CUBOID))
    monkeypatch.setattr(meshes, "STL_CHUNK", 5)
    assert np.array_equal(loaded(path, "stl"), CUBOID.astype(np.float32))


def test_binary_stl_whose_header_starts_with_solid_is_still_binary() -> None:
    data = b"solid but binary".ljust(80) + binary_stl(CUBOID)[80:]
    assert len(loaded(data, "stl")) == 12


def test_truncated_binary_stl_is_unreadable() -> None:
    rejection = rejected(binary_stl(CUBOID)[:-20], "stl")
    assert rejection.reason is Reason.UNREADABLE
    assert "truncated" in rejection.detail


@pytest.mark.parametrize("fmt", ["stl", "obj", "ply", "3mf", "glb"])
def test_garbage_bytes_are_unreadable(fmt: str) -> None:
    garbage = np.random.default_rng(5).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    assert rejected(garbage, fmt).reason is Reason.UNREADABLE


@pytest.mark.parametrize("fmt", ["stl", "3mf", "glb"])
def test_truncated_files_are_unreadable(fmt: str) -> None:
    data = {
        "stl": exported(CUBOID, "stl_ascii"),
        "3mf": three_mf_file(CUBOID),
        "glb": exported(CUBOID, "glb"),
    }[fmt]
    assert rejected(data[: len(data) // 2], fmt).reason is Reason.UNREADABLE


def test_empty_file_is_unreadable() -> None:
    assert rejected(b"", "stl").reason is Reason.UNREADABLE


def test_unknown_format_is_unreadable() -> None:
    assert "stl" in rejected(b"whatever", "dwg").detail


def test_not_a_number_coordinates_are_unreadable() -> None:
    triangles = CUBOID.copy()
    triangles[3, 1, 2] = np.nan
    assert rejected(binary_stl(triangles), "stl").reason is Reason.UNREADABLE


def test_3mf_without_a_model_part_is_unreadable() -> None:
    assert rejected(package({"3D/other.xml": b"<x/>"}), "3mf").reason is Reason.UNREADABLE


def test_3mf_with_an_unknown_unit_is_unreadable() -> None:
    assert "furlong" in rejected(three_mf_file(CUBOID, "furlong"), "3mf").detail


def test_file_over_the_size_limit_is_refused_unread() -> None:
    rejection = rejected(binary_stl(CUBOID), "stl", Limits(max_file_bytes=500))
    assert rejection.reason is Reason.FILE_TOO_LARGE


def test_binary_stl_with_too_many_triangles_is_refused_from_its_header() -> None:
    rejection = rejected(binary_stl(CUBOID), "stl", Limits(max_triangles=11))
    assert rejection.reason is Reason.TOO_MANY_TRIANGLES
    assert "12" in rejection.detail


@pytest.mark.parametrize("fmt", ["obj", "ply", "glb"])
def test_other_formats_with_too_many_triangles_are_refused(fmt: str) -> None:
    rejection = rejected(exported(CUBOID, fmt), fmt, Limits(max_triangles=11))
    assert rejection.reason is Reason.TOO_MANY_TRIANGLES


def test_3mf_with_too_many_triangles_is_refused_before_parsing() -> None:
    assert (
        rejected(three_mf_file(CUBOID), "3mf", Limits(max_triangles=11)).reason is Reason.TOO_MANY_TRIANGLES
    )


def zip_bomb(unpacked_bytes: int) -> bytes:
    """A 3MF whose model part is `unpacked_bytes` of zeros, which deflate about a thousandfold."""
    return package({"3D/3dmodel.model": bytes(unpacked_bytes)})


def understated(archive: bytes, declared: int) -> bytes:
    """The archive with the model part's uncompressed size rewritten, in both of the zip's headers."""
    data = bytearray(archive)
    with zipfile.ZipFile(io.BytesIO(archive)) as z:
        info = z.getinfo("3D/3dmodel.model")
    struct.pack_into("<I", data, info.header_offset + 22, declared)
    # the central directory comes last, so the name's last occurrence is in its entry
    central = data.rindex(b"3D/3dmodel.model") - 46
    assert data[central : central + 4] == b"PK\x01\x02"
    struct.pack_into("<I", data, central + 24, declared)
    return bytes(data)


# "Cheaply" is CPU time of this thread (unpacking the 50 MB would take several times the bound), not wall
# time: on a busy machine the wall clock measures the neighbours, not the refusal.


def test_zip_bomb_3mf_is_refused_from_its_declared_size() -> None:
    bomb = zip_bomb(50 << 20)
    started = time.thread_time()
    rejection = rejected(bomb, "3mf", Limits(max_unzipped_bytes=1 << 20))
    assert rejection.reason is Reason.FILE_TOO_LARGE
    assert time.thread_time() - started < 0.5


def test_zip_bomb_3mf_that_understates_its_size_is_refused_cheaply() -> None:
    bomb = understated(zip_bomb(50 << 20), declared=1000)
    started = time.thread_time()
    rejection = rejected(bomb, "3mf", Limits(max_unzipped_bytes=1 << 20))
    assert rejection.reason in {Reason.FILE_TOO_LARGE, Reason.UNREADABLE}
    assert time.thread_time() - started < 0.5


def test_unzipped_size_is_counted_while_unpacking(monkeypatch: pytest.MonkeyPatch) -> None:
    # Skip the check of the declared sizes, so only the count of bytes actually produced can refuse it.
    monkeypatch.setattr(three_mf, "_declared_bytes", lambda infos: 0)
    rejection = rejected(zip_bomb(8 << 20), "3mf", Limits(max_unzipped_bytes=4 << 20))
    assert rejection.reason is Reason.FILE_TOO_LARGE
