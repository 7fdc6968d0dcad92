"""Preview build time and size (pricing.preview) per mesh size, with where the time goes.

Run: `.venv/bin/python bench/preview.py [--sizes 100000,1000000] [--repeat 3]`

On the generated torus of bench/quote.py (80 x 80 x 20 mm, about N triangles): the quote's own wall
analysis (`wall_thickness(triangles, 0.6)`) runs first, outside the clock, then `preview_glb` is timed
whole (weld the corners, each vertex's thinnest wall, simplify to TRIANGLE_BUDGET with
fast-simplification, GLB bytes), fastest of `--repeat`, with its CPU time (the process's, every thread),
the GLB's size and triangle count; then the weld and the simplification alone, once, to say where the time
goes. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import fast_simplification
import numpy as np

from pricing.geometry import vertex_ids
from pricing.preview import TRIANGLE_BUDGET, preview_glb
from pricing.thickness import wall_thickness
from quote import torus


def fastest(work: Any, repeat: int) -> tuple[float, float, Any]:
    """The fastest run's wall time, its CPU time (every thread of the process), and a result."""
    best, cpu, result = float("inf"), 0.0, None
    for _ in range(repeat):
        started, started_cpu = time.perf_counter(), time.process_time()
        result = work()
        seconds = time.perf_counter() - started
        if seconds < best:
            best, cpu = seconds, time.process_time() - started_cpu
    return best, cpu, result


def timed(work: Any, *args: Any, **kwargs: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = work(*args, **kwargs)
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"budget {TRIANGLE_BUDGET:,} triangles")
    print("triangles | preview wall s (CPU s) | GLB bytes | preview triangles | weld s | simplify s")
    for size in (int(s) for s in args.sizes.split(",")):
        vertices, faces = torus(size)
        triangles = vertices[faces]
        thickness = wall_thickness(triangles, 0.6)
        assert thickness.per_triangle is not None
        walls = thickness.per_triangle
        seconds, cpu, glb = fastest(lambda: preview_glb(triangles, walls, 0.6), args.repeat)  # noqa: B023
        kept = _triangles_in(glb)
        weld_s, (ids, count) = timed(vertex_ids, triangles.reshape(-1, 3).astype(np.float32))
        points = np.empty((count, 3), np.float32)
        points[ids] = triangles.reshape(-1, 3)
        welded = ids.reshape(-1, 3).astype(np.int32)
        simplify_s = 0.0
        if len(welded) > TRIANGLE_BUDGET:
            simplify_s, _ = timed(
                fast_simplification.simplify,
                points,
                welded,
                target_count=TRIANGLE_BUDGET,
                return_collapses=True,
            )
        print(
            f"{len(triangles):,} | {seconds:.3f} ({cpu:.3f}) | {len(glb):,} | {kept:,} | "
            f"{weld_s:.3f} | {simplify_s:.3f}",
            flush=True,
        )


def _triangles_in(glb: bytes) -> int:
    import json
    import struct

    length = struct.unpack_from("<I", glb, 12)[0]
    document = json.loads(glb[20 : 20 + length])
    indices = document["meshes"][0]["primitives"][0]["indices"]
    return int(document["accessors"][indices]["count"]) // 3


if __name__ == "__main__":
    main()
