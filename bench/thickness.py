"""Wall-thickness analysis speed (pricing.thickness) against trimesh's own ray-based thickness.

Run: `.venv/bin/python bench/thickness.py [--sizes 100000,1000000] [--repeat 3] [--trimesh-sample 0]`

On the generated torus of bench/quote.py (80 x 80 x 20 mm, about N triangles), ours is
`wall_thickness(triangles, 0.6)`: a scene over every triangle, an inward and an outward ray from each
centroid, the area-weighted figures. trimesh's is `trimesh.proximity.thickness(mesh, centroids,
normals=face_normals, method="ray")`, the first hit past tol.planar along the inverted normal, through
its embreex ray engine; the Trimesh object is made before the clock starts, its scene inside it (ours is
built inside too). With `--trimesh-sample K`, trimesh casts from K centroids only and its time is
scaled to N rays: its scene's build is then counted N / K times, so the scaled figure overstates it
(printed beside the unscaled one). CPU is the process's, every thread. Each case keeps its fastest of
`--repeat` runs, after one warm-up call on a small mesh that loads Embree (about 30 ms, once a
process). Also prints how far the two agree on the rays both cast. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import trimesh

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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--trimesh-sample", type=int, default=0, help="rays trimesh casts (0: all)")
    args = parser.parse_args()

    vertices, faces = torus(1000)
    wall_thickness(vertices[faces], 0.6)  # loads libembree4 and starts its threads

    print(
        f"{'triangles':>10} {'ours s':>8} {'(CPU)':>7} {'trimesh s':>10} {'(CPU)':>7} {'rays':>9} "
        f"{'trimesh/ours':>13}  agreement"
    )
    for size in (int(s) for s in args.sizes.split(",")):
        vertices, faces = torus(size)
        triangles = vertices[faces].astype(np.float32)
        ours_s, ours_cpu, ours = fastest(
            lambda triangles=triangles: wall_thickness(triangles, 0.6), args.repeat
        )

        mesh = trimesh.Trimesh(vertices, faces, process=False)
        centroids, normals = mesh.triangles_center, mesh.face_normals
        sample = np.arange(len(faces))
        if 0 < args.trimesh_sample < len(faces):
            sample = np.linspace(0, len(faces) - 1, args.trimesh_sample).astype(np.int64)

        def theirs(mesh: Any = mesh, points: Any = centroids[sample], inward: Any = normals[sample]) -> Any:
            mesh._cache.clear()  # the ray engine's scene is cached on the mesh: build it every run
            return trimesh.proximity.thickness(mesh, points, normals=inward, method="ray")

        theirs_s, theirs_cpu, their_walls = fastest(theirs, args.repeat)
        scaled = theirs_s * len(faces) / len(sample)
        # ours per ray, for the agreement: the inward distance the same way, without the figures
        ours_walls = _our_walls(triangles)[sample]
        both = np.isfinite(their_walls) & np.isfinite(ours_walls)
        gap = np.abs(ours_walls[both] - their_walls[both])
        label = f"{theirs_s:.3f}" if len(sample) == len(faces) else f"{scaled:.3f}*"
        print(
            f"{len(faces):>10,} {ours_s:>8.3f} {ours_cpu:>7.3f} {label:>10} {theirs_cpu:>7.3f} "
            f"{ours.rays:>9,} {scaled / ours_s:>12.1f}x  "
            f"max |ours - trimesh| {gap.max():.2e} mm over {both.sum():,} rays, "
            f"min {ours.minimum_mm:.3f} mm p1 {ours.p1_mm:.3f} mm unreliable {ours.unreliable_share:.4f}"
        )
        if len(sample) != len(faces):
            print(f"{'':>10} * trimesh cast {len(sample):,} rays in {theirs_s:.3f} s, scaled to all")


def _our_walls(triangles: np.ndarray) -> np.ndarray:
    from pricing import thickness

    t = triangles.astype(np.float64)
    low, high = t.reshape(-1, 3).min(axis=0), t.reshape(-1, 3).max(axis=0)
    local = t - (low + high) / 2
    n = np.cross(local[:, 1] - local[:, 0], local[:, 2] - local[:, 0])
    n /= np.linalg.norm(n, axis=1)[:, None]
    vertices = np.zeros(local.size + 1, np.float32)
    vertices[:-1] = local.reshape(-1)
    origins, directions = local.mean(axis=1).astype(np.float32), (-n).astype(np.float32)
    tnear = thickness.START_RELATIVE * float(np.linalg.norm(high - low))
    (distance, _), _ = thickness._first_hits(vertices, origins, directions, tnear, 2)
    return distance.astype(np.float64)


if __name__ == "__main__":
    main()
