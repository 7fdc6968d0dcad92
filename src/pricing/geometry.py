"""Vectorised measures of a triangle array: volume, surface area, bounding box, and whether it is closed.

Everything here is numpy over whole arrays (or large chunks of them); no Python loop visits a triangle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
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


MERGE_RELATIVE = 2.5e-4
"""Corners closer than this share of the bounding box's diagonal are one corner (as trimesh's tol.merge,
but relative): CAD exports write a shared corner as copies that differ by float noise (0.0 beside
-2.7e-16, up to a few micrometres apart), which is 5 um on a 20 mm ring."""
MERGE_MAX_MM = 0.02
"""...and never more than this, so that a real gap of a tenth of a millimetre stays a hole on any model
the flask takes."""

MERGE_EDGE_SHARE = 0.1
"""Corners two cells apart can still merge (see `_merged_within`): a tenth of the short edges keeps a
fine mesh's corners apart with room to spare."""

_GRID_OFFSETS = [(x, y, z) for x in (0.0, 0.5) for y in (0.0, 0.5) for z in (0.0, 0.5)]


@dataclass(frozen=True)
class DefectiveEdges:
    """Edges not shared by exactly two faces that agree on which side is outside, and where they lie."""

    count: int
    tolerance_mm: float
    """Corners closer than this were taken as one."""
    low: tuple[float, float, float] | None = None
    high: tuple[float, float, float] | None = None
    """The box around the defective edges (None when there are none)."""


def merge_tolerance(triangles: Triangles) -> float:
    """How close two corners must be to count as one: MERGE_RELATIVE of the diagonal, at most
    MERGE_MAX_MM, and at most MERGE_EDGE_SHARE of the model's short edges (its 1st percentile), so that a
    fine mesh's own neighbouring corners never merge."""
    corners = triangles.reshape(-1, 3)
    low = np.array([corners[:, axis].min() for axis in range(3)], np.float64)
    high = np.array([corners[:, axis].max() for axis in range(3)], np.float64)
    tolerance = min(MERGE_RELATIVE * float(np.linalg.norm(high - low)), MERGE_MAX_MM)
    sample = triangles[:: max(1, len(triangles) // 100_000)].astype(np.float64)
    edges = np.sqrt(((sample - np.roll(sample, 1, axis=1)) ** 2).sum(axis=2)).reshape(-1)
    edges = edges[edges > 0]
    if len(edges):
        tolerance = min(tolerance, MERGE_EDGE_SHARE * float(np.percentile(edges, 1)))
    return tolerance


def defective_edges(triangles: Triangles) -> DefectiveEdges:
    """The edges that keep the model from being a closed solid; none for a closed solid.

    Corners are merged by exact equality first (shared corners in STL and friends are usually
    bit-identical copies, and that is the fast path). If edges are left open, corners within
    `merge_tolerance` are merged (see `_merged_within`) and the edges counted again. Faces that collapse
    to a line or point after merging are ignored: they add no volume or area and their edges cancel out.
    """
    corners = triangles.reshape(-1, 3)
    ids, count = vertex_ids(corners)
    tolerance = merge_tolerance(triangles)
    if _defects(ids, count).size == 0:
        return DefectiveEdges(0, tolerance)
    if tolerance > 0:
        ids, count = _merged_within(corners, tolerance)
    defects = _defects(ids, count)
    if defects.size == 0:
        return DefectiveEdges(0, tolerance)
    points = _points(corners, ids, count)[
        np.concatenate([defects // count, defects % count]).astype(np.int64)
    ]
    low, high = points.min(axis=0), points.max(axis=0)
    return DefectiveEdges(
        int(defects.size),
        tolerance,
        (float(low[0]), float(low[1]), float(low[2])),
        (float(high[0]), float(high[1]), float(high[2])),
    )


def _defects(ids: npt.NDArray[np.int64], count: int) -> npt.NDArray[np.uint64]:
    """The undirected edge keys (low id x count + high id) of the defective edges."""
    faces = ids.reshape(-1, 3)
    faces = faces[(faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 2] != faces[:, 0])]
    keys = _edge_keys(faces, count)
    keys.sort()
    # A closed, consistently wound, edge-manifold surface uses every edge once in each direction, so
    # the sorted keys come in pairs (2e, 2e + 1): e the undirected edge, the low bit its direction.
    first, second = keys[0::2], keys[1::2]
    if len(keys) % 2 == 0 and not (first & 1).any() and np.array_equal(second, first + 1):
        return np.zeros(0, np.uint64)
    edges, starts, uses = np.unique(keys >> np.uint64(1), return_index=True, return_counts=True)
    backward = np.add.reduceat(keys & np.uint64(1), starts) if len(keys) else np.zeros(0, np.uint64)
    defective: npt.NDArray[np.uint64] = edges[(uses != 2) | (backward != 1)]
    return defective


def _points(corners: npt.NDArray[np.floating[Any]], ids: npt.NDArray[np.int64], count: int) -> Any:
    """One point per id (the last corner that carries it), in float64."""
    points = np.empty((count, 3), np.float64)
    points[ids] = corners
    return points


def _merged_within(
    corners: npt.NDArray[np.floating[Any]], tolerance: float
) -> tuple[npt.NDArray[np.int64], int]:
    """Corner ids with corners closer than `tolerance` (on every axis) merged, transitively: corners more
    than twice `tolerance` apart on some axis merge only through a chain of corners between them, which
    MERGE_EDGE_SHARE keeps a mesh's own corners from forming.

    Corners are bucketed on a grid of cells 2 x `tolerance` wide: one sort, which merges nearly all the
    copies of a noisy corner. Copies that a cell boundary separates are on edges still defective, so
    only those corners go on: two corners closer than half a cell on every axis share a cell in at least
    one of the eight grids shifted by half a cell per axis, and the shifted grids join labels (the
    smallest wins) until none changes. Connected components without a spatial index or a Python loop.
    """
    # the cell of each corner, as integral floats: vertex_ids' hash sort then groups a cell's corners
    low = np.array([corners[:, axis].min() for axis in range(3)], np.float64)
    cells = np.floor((corners - low) / (2.0 * tolerance))
    cells += 0.0  # -0.0 and 0.0 are one cell
    ids, count = vertex_ids(cells)
    del cells
    defects = _defects(ids, count)
    if defects.size == 0:
        return ids, count
    ends = np.unique(np.concatenate([defects // count, defects % count]).astype(np.int64))
    cells = (_points(corners, ids, count)[ends]) / (2.0 * tolerance)
    cells -= cells.min(axis=0)
    labels = np.arange(count, dtype=np.int64)
    labels[ends] = ends[_joined(cells, np.arange(len(ends), dtype=np.int64), _GRID_OFFSETS)]
    merged, compact = np.unique(labels, return_inverse=True)
    return compact.reshape(-1)[ids], len(merged)


def _joined(
    cells: npt.NDArray[np.float64], labels: npt.NDArray[np.int64], offsets: list[tuple[float, float, float]]
) -> npt.NDArray[np.int64]:
    """`labels` (indices into `cells`) joined across points sharing a cell of any of the `offsets`
    grids, repeated until stable."""
    spans = np.floor(cells.max(axis=0)).astype(np.int64) + 2 if len(cells) else np.ones(3, np.int64)
    while True:
        before = labels
        for offset in offsets:
            cell = np.floor(cells + np.asarray(offset)).astype(np.int64)
            if float(spans[0]) * float(spans[1]) * float(spans[2]) < 2.0**62:
                key = (cell[:, 0] * spans[1] + cell[:, 1]) * spans[2] + cell[:, 2]
                _, group = np.unique(key, return_inverse=True)
            else:  # a model millions of cells across: sort the cells themselves (slow, and rare)
                _, group = np.unique(cell, axis=0, return_inverse=True)
            group = group.reshape(-1)
            smallest = np.full(int(group.max()) + 1, len(labels), np.int64)
            np.minimum.at(smallest, group, labels)
            labels = smallest[group]
            labels = labels[labels]  # follow chains (a -> b -> c) as far as they go this pass
        if np.array_equal(labels, before):
            return labels


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
