"""The preview of a model: a small binary glTF (GLB) coloured by the wall thickness the quote measured.

The console and the shop show it in three.js. It holds one mesh, in the model's own coordinates in
millimetres (glTF's unit is the metre; the viewer only frames it, so the numbers are kept as the quote
read them), with per vertex:

- `POSITION` (float32),
- `COLOR_0` (RGBA, normalized unsigned bytes, linear as glTF defines it: `stored(RED)` for the sRGB
  colour RED): red below the material's minimum wall, amber up to NEAR_FACTOR times it, a neutral metal
  grey above, a cool grey where nothing was measured,
- `_WALL_MM` (float32, an application-specific attribute): the wall thickness in millimetres there (NaN
  where nothing was measured), so a viewer can recolour against another minimum or show the value;

and on its node `extras`: `min_wall_mm` (what the colours were computed against), `near_factor` and
`model_triangles` (the model's own count, before any simplification).

The thickness of a vertex is the thinnest wall of the quote's own per-triangle measurements
(pricing.thickness, on the full model) over the original triangles that meet at it, so the red of the
preview is the quote's thin region, never re-measured on a coarser copy. A model of more than
TRIANGLE_BUDGET triangles is simplified first (`fast-simplification`, quadric edge collapses); each
vertex of the simplified copy takes the thinnest wall of the original vertices collapsed into it.

Pure: arrays in, bytes out; no I/O.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import fast_simplification
import numpy as np
import numpy.typing as npt

from pricing.geometry import vertex_ids

TRIANGLE_BUDGET = 100_000
"""At most this many triangles in a preview (about 2.2 MB of GLB); smaller models are kept whole."""
NEAR_FACTOR = 1.25
"""Walls from the minimum up to this factor of it are amber: sound, but close to the limit."""

RED = (214, 40, 40)
AMBER = (240, 168, 32)
NEUTRAL = (200, 196, 186)
UNMEASURED = (150, 160, 175)
"""The colours as shown (sRGB); COLOR_0 holds them linear (`stored`), which viewers turn back to these."""


def stored(srgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """An sRGB colour as COLOR_0 holds it: linear, in normalized bytes."""
    c = np.asarray(srgb, np.float64) / 255
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    r, g, b = (int(v) for v in np.rint(linear * 255))
    return r, g, b


MEDIA_TYPE = "model/gltf-binary"

_GLB_MAGIC = 0x46546C67
_JSON_CHUNK = 0x4E4F534A
_BIN_CHUNK = 0x004E4942
_FLOAT, _UBYTE, _UINT = 5126, 5121, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963


def preview_glb(
    triangles: npt.NDArray[Any],
    wall_mm: npt.NDArray[np.float32],
    min_wall_mm: float,
    budget: int = TRIANGLE_BUDGET,
) -> bytes:
    """The GLB preview of the triangle soup `triangles` (N, 3, 3) whose triangle i has the wall
    `wall_mm[i]` behind it (nan: not measured), coloured against `min_wall_mm`."""
    soup = np.asarray(triangles).reshape(-1, 3, 3)
    if len(wall_mm) != len(soup):
        raise ValueError(f"{len(wall_mm)} walls for {len(soup)} triangles")
    corners = soup.reshape(-1, 3)
    # welded in float32, the precision the preview is drawn in (and STL's own): half the bytes to hash
    ids, count = vertex_ids(corners.astype(np.float32))
    faces = ids.reshape(-1, 3)
    points = np.empty((count, 3), np.float64)
    points[ids] = corners
    # each vertex: the thinnest wall of the triangles meeting at it (inf stands for "not measured")
    walls = np.where(np.isnan(wall_mm), np.inf, wall_mm).astype(np.float32)
    wall = _thinnest(np.repeat(walls, 3), ids, count)
    if len(faces) > budget:
        points, faces, wall = _simplified(points, faces, wall, budget)
    wall = np.where(np.isinf(wall), np.nan, wall).astype(np.float32)
    extras = {"min_wall_mm": min_wall_mm, "near_factor": NEAR_FACTOR, "model_triangles": len(soup)}
    return glb(points.astype(np.float32), faces.astype(np.uint32), wall, colours(wall, min_wall_mm), extras)


def colours(wall_mm: npt.NDArray[np.float32], min_wall_mm: float) -> npt.NDArray[np.uint8]:
    """Linear RGB bytes per vertex: red below `min_wall_mm`, amber near it, neutral above, grey
    unmeasured."""
    rgb = np.empty((len(wall_mm), 3), np.uint8)
    rgb[:] = stored(UNMEASURED)
    measured = ~np.isnan(wall_mm)
    value = np.where(measured, wall_mm, 0.0)
    rgb[measured & (value >= min_wall_mm * NEAR_FACTOR)] = stored(NEUTRAL)
    rgb[measured & (value >= min_wall_mm) & (value < min_wall_mm * NEAR_FACTOR)] = stored(AMBER)
    rgb[measured & (value < min_wall_mm)] = stored(RED)
    return rgb


def _thinnest(values: npt.NDArray[np.float32], groups: npt.NDArray[np.int64], count: int) -> Any:
    """The minimum of `values` per group id in 0..count-1 (inf for an empty group)."""
    out = np.full(count, np.inf, np.float32)
    # numpy 2's ufunc.at is a tight loop: 0.02 s for 3M values, where sorting them took 0.6-1.4 s
    np.minimum.at(out, groups, values)
    return out


def _simplified(
    points: npt.NDArray[np.float64], faces: npt.NDArray[np.int64], wall: Any, budget: int
) -> tuple[Any, Any, Any]:
    """The mesh collapsed to at most `budget` triangles, each kept vertex with the thinnest wall of the
    vertices collapsed into it."""
    simple, simple_faces, collapses = fast_simplification.simplify(
        points.astype(np.float32), faces.astype(np.int32), target_count=budget, return_collapses=True
    )
    # collapses[i] = (a, b): vertex b went into vertex a. Each vertex goes at most once, so the pairs
    # are a forest whose roots are the kept vertices, numbered in the output in their original order.
    # Following it (pointer jumping) gives the same mapping as fast_simplification.replay_simplification
    # (checked on the test rings and tori) in milliseconds instead of replaying every collapse (1.9 s at
    # 1M triangles).
    count = len(points)
    parent = np.arange(count)
    pairs = np.asarray(collapses, np.int64).reshape(-1, 2)
    parent[pairs[:, 1]] = pairs[:, 0]
    while True:
        jumped = parent[parent]
        if np.array_equal(jumped, parent):
            break
        parent = jumped
    roots = np.flatnonzero(parent == np.arange(count))
    if len(roots) != len(simple):
        raise RuntimeError(f"{len(roots)} kept vertices, {len(simple)} in the simplified mesh")
    number = np.full(count, -1, np.int64)
    number[roots] = np.arange(len(roots))
    simple_wall = _thinnest(wall, number[parent], len(simple))
    return np.asarray(simple), np.asarray(simple_faces, np.int64), simple_wall


def glb(
    points: npt.NDArray[np.float32],
    faces: npt.NDArray[np.uint32],
    wall_mm: npt.NDArray[np.float32],
    rgb: npt.NDArray[np.uint8],
    extras: dict[str, Any] | None = None,
) -> bytes:
    """One indexed mesh as GLB: positions, COLOR_0 (normalized bytes, padded to 4), _WALL_MM, indices;
    `extras` on its node (three.js: the object's userData)."""
    count = len(points)
    colour = np.zeros((count, 4), np.uint8)
    colour[:, :3] = rgb
    colour[:, 3] = 255
    parts = [
        (np.ascontiguousarray(points, "<f4").tobytes(), _ARRAY_BUFFER),
        (colour.tobytes(), _ARRAY_BUFFER),
        (np.ascontiguousarray(wall_mm, "<f4").tobytes(), _ARRAY_BUFFER),
        (np.ascontiguousarray(faces, "<u4").tobytes(), _ELEMENT_ARRAY_BUFFER),
    ]
    views, blob = [], b""
    for data, target in parts:
        views.append({"buffer": 0, "byteOffset": len(blob), "byteLength": len(data), "target": target})
        blob += data + b"\0" * (-len(data) % 4)
    low = points.min(axis=0) if count else np.zeros(3)
    high = points.max(axis=0) if count else np.zeros(3)
    document = {
        "asset": {"version": "2.0", "generator": "Alexandrite pricing.preview"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": "model", "extras": extras or {}}],
        "meshes": [
            {
                "primitives": [
                    {"attributes": {"POSITION": 0, "COLOR_0": 1, "_WALL_MM": 2}, "indices": 3, "mode": 4}
                ]
            }
        ],
        "accessors": [
            {
                "bufferView": 0,
                "componentType": _FLOAT,
                "count": count,
                "type": "VEC3",
                "min": [float(v) for v in low],
                "max": [float(v) for v in high],
            },
            {"bufferView": 1, "componentType": _UBYTE, "normalized": True, "count": count, "type": "VEC4"},
            {"bufferView": 2, "componentType": _FLOAT, "count": count, "type": "SCALAR"},
            {"bufferView": 3, "componentType": _UINT, "count": int(faces.size), "type": "SCALAR"},
        ],
        "bufferViews": views,
        "buffers": [{"byteLength": len(blob)}],
    }
    text = json.dumps(document, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    total = 12 + 8 + len(text) + 8 + len(blob)
    return b"".join(
        [
            struct.pack("<III", _GLB_MAGIC, 2, total),
            struct.pack("<II", len(text), _JSON_CHUNK),
            text,
            struct.pack("<II", len(blob), _BIN_CHUNK),
            blob,
        ]
    )
