"""Small model files made in the tests, so no binary fixtures need committing."""

from __future__ import annotations

import struct

import numpy as np

# A unit cube's 12 triangles, wound counter-clockwise seen from outside (outward normals).
CUBE_FACES = np.array(
    [
        [0, 2, 1], [0, 3, 2], [4, 5, 6], [4, 6, 7], [0, 1, 5], [0, 5, 4],
        [1, 2, 6], [1, 6, 5], [2, 3, 7], [2, 7, 6], [3, 0, 4], [3, 4, 7],
    ]
)  # fmt: skip
CUBE_VERTICES = np.array(
    [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]], dtype=float
)


def cube_triangles(size_mm: float = 10.0) -> np.ndarray:
    """The (12, 3, 3) triangles of a closed cube with edge `size_mm`."""
    return CUBE_VERTICES[CUBE_FACES] * size_mm


def binary_stl(triangles: np.ndarray) -> bytes:
    """Binary STL bytes: 80-byte header, count, then 50 bytes per triangle."""
    records = np.zeros(len(triangles), dtype=[("n", "<f4", 3), ("v", "<f4", (3, 3)), ("attr", "<u2")])
    records["v"] = triangles
    return b"alexandrite test model".ljust(80, b" ") + struct.pack("<I", len(triangles)) + records.tobytes()


def ascii_stl(triangles: np.ndarray) -> bytes:
    """ASCII STL text of the same triangles."""
    lines = ["solid test"]
    for tri in triangles:
        lines += ["  facet normal 0 0 0", "    outer loop"]
        lines += [f"      vertex {x:.6f} {y:.6f} {z:.6f}" for x, y, z in tri]
        lines += ["    endloop", "  endfacet"]
    lines.append("endsolid test")
    return ("\n".join(lines) + "\n").encode()


def cube_stl(size_mm: float = 10.0) -> bytes:
    """A closed 10 mm cube as binary STL."""
    return binary_stl(cube_triangles(size_mm))


def open_box_stl(size_mm: float = 10.0) -> bytes:
    """A cube with its top missing: not watertight, so it cannot be cast."""
    return binary_stl(cube_triangles(size_mm)[:10])
