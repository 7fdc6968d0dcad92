"""Vectorised measures of a triangle array: volume, surface area, bounding box, and whether it is closed.

Everything here is numpy over whole arrays (or large chunks of them); no Python loop visits a triangle.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from orders_core.contracts import MeshFigures
from pricing.meshes import Triangles

CHUNK = 1 << 16
"""Triangles converted to float64 at a time: enough to amortise numpy's overhead, small enough for cache."""

_MIX = np.uint64(0x9E3779B97F4A7C15)


def figures_of(triangles: Triangles, density_g_cm3: float) -> MeshFigures:
    """Volume (signed: negative when faces point inward), area, mass, triangle count and bounding box."""
    corners = triangles.reshape(-1, 3)
    # one column at a time: numpy reduces a strided column far faster than along axis 0 of (N, 3)
    low = np.array([corners[:, axis].min() for axis in range(3)], np.float64)
    high = np.array([corners[:, axis].max() for axis in range(3)], np.float64)
    volume, area = _volume_and_area(triangles, (low + high) / 2)
    return MeshFigures(
        volume_mm3=volume,
        area_mm2=area,
        mass_g=volume / 1000.0 * density_g_cm3,
        triangle_count=len(triangles),
        bbox_mm=(float(high[0] - low[0]), float(high[1] - low[1]), float(high[2] - low[2])),
    )


def _volume_and_area(triangles: Triangles, origin: npt.NDArray[np.float64]) -> tuple[float, float]:
    # Signed tetrahedra against the box centre rather than (0, 0, 0): the terms stay small for a model
    # placed far from the origin, so float cancellation does not make volume depend on placement.
    volumes: list[float] = []
    areas: list[float] = []
    for start in range(0, len(triangles), CHUNK):
        t = triangles[start : start + CHUNK].astype(np.float64) - origin
        a, b, c = t[:, 0], t[:, 1], t[:, 2]
        u, v = b - a, c - a
        n = np.empty_like(u)
        n[:, 0] = u[:, 1] * v[:, 2] - u[:, 2] * v[:, 1]
        n[:, 1] = u[:, 2] * v[:, 0] - u[:, 0] * v[:, 2]
        n[:, 2] = u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0]
        # a . ((b - a) x (c - a)) equals a . (b x c), six times the tetrahedron's signed volume
        volumes.append(float(np.einsum("ij,ij->", a, n)))
        areas.append(float(np.sqrt(np.einsum("ij,ij->i", n, n)).sum()))
    return math.fsum(volumes) / 6.0, math.fsum(areas) / 2.0


def defective_edges(triangles: Triangles) -> int:
    """Edges not shared by exactly two faces that agree on which side is outside; 0 for a closed solid.

    Corners are merged by exact equality of their coordinates (shared corners in STL and friends are
    bit-identical copies). Faces that collapse to a line or point after merging are ignored: they add
    no volume or area and their edges cancel out.
    """
    ids, count = vertex_ids(triangles.reshape(-1, 3))
    faces = ids.reshape(-1, 3)
    faces = faces[(faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 2] != faces[:, 0])]
    keys = _edge_keys(faces, count)
    keys.sort()
    # A closed, consistently wound, edge-manifold surface uses every edge once in each direction, so
    # the sorted keys come in pairs (2e, 2e + 1): e the undirected edge, the low bit its direction.
    first, second = keys[0::2], keys[1::2]
    if len(keys) % 2 == 0 and not (first & 1).any() and np.array_equal(second, first + 1):
        return 0
    _edges, starts, uses = np.unique(keys >> 1, return_index=True, return_counts=True)
    backward = np.add.reduceat(keys & 1, starts) if len(keys) else np.zeros(0, np.uint64)
    return int(np.count_nonzero((uses != 2) | (backward != 1)))


def vertex_ids(corners: npt.NDArray[np.floating[Any]]) -> tuple[npt.NDArray[np.int64], int]:
    """An id per corner, equal exactly when the coordinates are bit-identical; and how many ids."""
    rows = np.ascontiguousarray(corners)
    fields = _row_fields(rows)
    # Sort a 64-bit hash of each row rather than the rows: one argsort of integers instead of a
    # lexicographic sort of three floats, several times faster. Collisions are checked below.
    key = fields[0] * _MIX
    for field in fields[1:]:
        key ^= key >> np.uint64(31)
        key ^= field
        key *= _MIX
    order = np.argsort(key)
    ordered = key[order]
    del key
    same = ordered[1:] == ordered[:-1]
    del ordered
    if not _rows_equal_where(same, fields, order):
        return _vertex_ids_exactly(rows)
    starts = np.empty(len(rows), bool)
    starts[:1] = True
    np.logical_not(same, out=starts[1:])
    ids = np.empty(len(rows), np.int64)
    ids[order] = np.cumsum(starts) - 1
    return ids, int(np.count_nonzero(starts))


def _row_fields(rows: npt.NDArray[np.floating[Any]]) -> list[npt.NDArray[np.uint64]]:
    """Each row's bytes as 64-bit words (the last one zero-padded), one array per word."""
    width = rows.itemsize * rows.shape[1]
    names = [f"w{i}" for i in range((width + 7) // 8)]
    formats = ["<u8"] * (width // 8) + (["<u4"] if width % 8 else [])
    packed = rows.view(np.dtype({"names": names, "formats": formats})).reshape(-1)
    return [packed[name].astype(np.uint64) for name in names]


def _rows_equal_where(same: npt.NDArray[np.bool_], fields: list[npt.NDArray[np.uint64]], order: Any) -> bool:
    """Whether neighbours in hash order are equal rows exactly where their hashes are equal."""
    equal = np.ones(len(same), bool)
    for field in fields:
        ordered = field[order]
        equal &= ordered[1:] == ordered[:-1]
    # equal rows always hash alike, so any difference is a collision
    return bool(np.array_equal(equal, same))


def _vertex_ids_exactly(rows: npt.NDArray[np.floating[Any]]) -> tuple[npt.NDArray[np.int64], int]:
    # Two different corners hashed alike, which random data does about once in 10^7 million-corner
    # models: fall back to sorting the rows themselves.
    words = rows.view(np.uint32).reshape(len(rows), -1)
    unique, ids = np.unique(words, axis=0, return_inverse=True)
    return ids.reshape(-1).astype(np.int64), len(unique)


def _edge_keys(faces: npt.NDArray[np.int64], count: int) -> npt.NDArray[np.uint64]:
    """One key per directed edge: (low id x count + high id) x 2 + 1 if it runs from high to low."""
    start = faces.reshape(-1)
    end = faces[:, [1, 2, 0]].reshape(-1)
    keys = np.minimum(start, end).astype(np.uint64)
    keys *= np.uint64(count)
    keys += np.maximum(start, end).astype(np.uint64)
    keys <<= np.uint64(1)
    keys |= (start > end).astype(np.uint64)
    return keys
