"""Reading model files into one array of triangles, shape (N, 3, 3), in millimetres.

Binary STL, the format of nearly every large upload, is read with numpy alone, and so are plain 3MF
meshes (three_mf.py). The other formats go through trimesh with `process=False` (no vertex merging:
geometry.py does that faster). Units: STL, OBJ
and PLY carry none and are millimetres; 3MF declares one on its `<model>`; glTF is metres by definition.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import trimesh

from orders_core.contracts import MODEL_FORMATS
from pricing import three_mf
from pricing.limits import DEFAULT_LIMITS, Limits, MiB
from pricing.rejections import Reason, Rejection

Triangles = npt.NDArray[np.floating[Any]]
"""(N, 3, 3): N triangles of three xyz corners, in millimetres; float32 for STL, float64 otherwise."""

STL_RECORD = np.dtype([("normal", "<f4", (3,)), ("corners", "<f4", (3, 3)), ("attribute", "<u2")])
STL_HEADER_BYTES = 84
STL_CHUNK = 1 << 18
"""Triangles read per call, so reading a file never holds its raw records and the array at once."""

GLTF_MM = 1000.0


def load_triangles(source: Path | bytes, fmt: str, limits: Limits = DEFAULT_LIMITS) -> Triangles | Rejection:
    """The model's triangles in millimetres, or why they cannot be read within `limits`."""
    size = source.stat().st_size if isinstance(source, Path) else len(source)
    fmt = fmt.lower().lstrip(".")
    if size > limits.max_file_bytes:
        return Rejection(
            reason=Reason.FILE_TOO_LARGE,
            detail=f"the file is {size / MiB:.1f} MB; we accept models of up to "
            f"{limits.max_file_bytes / MiB:.0f} MB",
        )
    if size == 0:
        return _unreadable("the file is empty")
    if fmt not in MODEL_FORMATS:
        return _unreadable(f"we cannot read .{fmt} files; please upload one of {', '.join(MODEL_FORMATS)}")
    if fmt == "stl":
        triangles = _stl(source, size, limits)
    else:
        data = source.read_bytes() if isinstance(source, Path) else source
        triangles = _three_mf(data, limits) if fmt == "3mf" else _with_trimesh(data, fmt, limits)
    if isinstance(triangles, Rejection):
        return triangles
    return _checked(triangles, limits)


def _checked(triangles: Triangles, limits: Limits) -> Triangles | Rejection:
    if len(triangles) == 0:
        return _unreadable("the file holds no triangles")
    if len(triangles) > limits.max_triangles:
        return _too_many(len(triangles), limits)
    # min/max propagate NaN and expose infinities, so two reductions check every coordinate
    if not (np.isfinite(triangles.min()) and np.isfinite(triangles.max())):
        return _unreadable("the file holds invalid coordinates (not-a-number or infinite)")
    return triangles


def _stl(source: Path | bytes, size: int, limits: Limits) -> Triangles | Rejection:
    if isinstance(source, Path):
        with source.open("rb") as file:
            head = file.read(STL_HEADER_BYTES)
    else:
        head = source[:STL_HEADER_BYTES]
    if size >= STL_HEADER_BYTES:
        count = int(np.frombuffer(head, "<u4", count=1, offset=80)[0])
        if STL_HEADER_BYTES + STL_RECORD.itemsize * count == size:
            if count > limits.max_triangles:
                return _too_many(count, limits)
            return _binary_stl(source, count)
    if head.lstrip()[:5].lower() == b"solid":
        data = source.read_bytes() if isinstance(source, Path) else source
        estimate = data.count(b"endloop")
        if estimate > limits.max_triangles:
            return _too_many(estimate, limits)
        return _with_trimesh(data, "stl", limits)
    if size >= STL_HEADER_BYTES:
        return _unreadable(
            f"the STL file is truncated or corrupt: its header names {count} triangles, which take "
            f"{STL_HEADER_BYTES + STL_RECORD.itemsize * count} bytes, but the file has {size}"
        )
    return _unreadable("the file is too short to be an STL model")


def _binary_stl(source: Path | bytes, count: int) -> Triangles:
    triangles = np.empty((count, 3, 3), np.float32)
    if isinstance(source, bytes):
        records = np.frombuffer(source, STL_RECORD, count=count, offset=STL_HEADER_BYTES)
        # adding +0.0 copies out of the strided records and turns -0.0 into 0.0, so equal corners
        # have equal bits for the vertex merge
        np.add(records["corners"], 0.0, out=triangles)
        return triangles
    with source.open("rb") as file:
        file.seek(STL_HEADER_BYTES)
        for start in range(0, count, STL_CHUNK):
            records = np.fromfile(file, STL_RECORD, count=min(STL_CHUNK, count - start))
            np.add(records["corners"], 0.0, out=triangles[start : start + len(records)])
    return triangles


def _three_mf(data: bytes, limits: Limits) -> Triangles | Rejection:
    part = three_mf.model_part(data, limits)
    if isinstance(part, Rejection):
        return part
    model, to_mm = part
    estimate = model.count(b"v1=")
    if estimate > limits.max_triangles:
        return _too_many(estimate, limits)
    plain = three_mf.mesh_triangles(model)
    if plain is not None:
        plain *= to_mm
        plain += 0.0
        return plain
    # trimesh reads only the root model part; hand it over stored, since we already unpacked it safely
    stored = io.BytesIO()
    with zipfile.ZipFile(stored, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("3D/3dmodel.model", model)
    return _with_trimesh(stored.getvalue(), "3mf", limits, to_mm)


def _with_trimesh(data: bytes, fmt: str, limits: Limits, to_mm: float = 1.0) -> Triangles | Rejection:
    if fmt == "glb":
        to_mm = GLTF_MM
    try:
        scene = trimesh.load_scene(io.BytesIO(data), file_type=fmt, process=False, skip_materials=True)
        corners = [_placed(scene, node) for node in scene.graph.nodes_geometry]
    except MemoryError:
        raise
    except Exception:
        # trimesh's parsers fail on bad input with whatever exception the bad byte provokes
        return _unreadable(f"the file could not be read as {fmt.upper()}; it may be corrupt or truncated")
    corners = [c for c in corners if len(c)]
    if not corners:
        return _unreadable("the file holds no triangles")
    triangles = np.concatenate(corners) if len(corners) > 1 else corners[0]
    # one multiply per coordinate keeps equal corners equal, and +0.0 folds -0.0 into 0.0
    triangles *= to_mm
    triangles += 0.0
    return triangles


def _placed(scene: Any, node: str) -> Triangles:
    """One instance of a scene's mesh, moved to where the scene graph puts it."""
    # Not scene.dump(): it deep-copies materials, which fails for a texture it could not load.
    matrix, name = scene.graph[node]
    mesh = scene.geometry[name]
    if not isinstance(mesh, trimesh.Trimesh):
        return np.empty((0, 3, 3))
    triangles = np.asarray(mesh.vertices, np.float64)[np.asarray(mesh.faces, np.int64)]
    matrix = np.asarray(matrix, np.float64)
    if not np.array_equal(matrix, np.eye(4)):
        triangles = triangles @ matrix[:3, :3].T + matrix[:3, 3]
        if np.linalg.det(matrix[:3, :3]) < 0:
            # a mirroring placement turns the faces inside out; wind them back
            triangles = triangles[:, ::-1]
    return triangles


def _too_many(count: int, limits: Limits) -> Rejection:
    return Rejection(
        reason=Reason.TOO_MANY_TRIANGLES,
        detail=f"the model has {count:,} triangles; we price models of up to {limits.max_triangles:,}. "
        "Please reduce its detail (decimate the mesh) and upload it again",
    )


def _unreadable(detail: str) -> Rejection:
    return Rejection(reason=Reason.UNREADABLE, detail=detail)
