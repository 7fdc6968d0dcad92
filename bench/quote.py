"""Quote engine speed and memory against trimesh and a bare read, on generated tori of 10k to 4M triangles.

Run: `.venv/bin/python bench/quote.py [--sizes 10000,100000,1000000,4000000] [--repeat 3] [--no-3mf]`

Every case runs in a fresh subprocess: wall time of the work alone (imports excluded), and peak memory as
the rise of the process's peak resident set (ru_maxrss) over its resident set just before the work.
A case is repeated and its fastest run kept, because on a VM the first touch of memory that no process has
used lately is slow, and that penalises whichever case happens to run first. "warm" is a second quote in
the same process, as a long-running worker sees it. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve()
STL_RECORD = np.dtype([("normal", "<f4", (3,)), ("corners", "<f4", (3, 3)), ("attribute", "<u2")])


def torus(triangles: int) -> tuple[np.ndarray, np.ndarray]:
    """Vertices and faces of a closed torus (80 x 80 x 20 mm) with about `triangles` faces."""
    across = max(8, int(math.sqrt(triangles / 4)))
    around = max(8, triangles // (2 * across))
    theta = 2 * np.pi * np.arange(around) / around
    phi = 2 * np.pi * np.arange(across) / across
    ring = 30.0 + 10.0 * np.cos(phi)
    vertices = np.stack(
        [
            np.outer(np.cos(theta), ring),
            np.outer(np.sin(theta), ring),
            np.broadcast_to(10 * np.sin(phi), (around, across)),
        ],
        axis=-1,
    ).reshape(-1, 3)
    i, j = np.meshgrid(np.arange(around), np.arange(across), indexing="ij")
    a, b = i * across + j, (i + 1) % around * across + j
    c, d = (i + 1) % around * across + (j + 1) % across, i * across + (j + 1) % across
    faces = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    return vertices.astype(np.float32).astype(np.float64), faces


def write_stl(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    records = np.zeros(len(faces), STL_RECORD)
    records["corners"] = vertices[faces]
    with path.open("wb") as f:
        f.write(b"bench torus".ljust(80) + np.uint32(len(faces)).tobytes())
        records.tofile(f)


def write_3mf(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    head = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<model unit="millimeter" xml:lang="en-US" '
        'xmlns="http://schemas.microsoft.com/3dmanufacturing/core/2015/02">\n<resources>\n'
        '<object id="1" type="model"><mesh><vertices>\n'
    )
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive,
        archive.open("3D/3dmodel.model", "w", force_zip64=True) as model,
    ):
        model.write(head.encode())
        for block in np.array_split(np.arange(len(vertices)), max(1, len(vertices) // 200_000)):
            model.write(
                "".join(
                    f'<vertex x="{x:.6g}" y="{y:.6g}" z="{z:.6g}"/>\n' for x, y, z in vertices[block].tolist()
                ).encode()
            )
        model.write(b"</vertices><triangles>\n")
        for block in np.array_split(np.arange(len(faces)), max(1, len(faces) // 200_000)):
            model.write(
                "".join(
                    f'<triangle v1="{p}" v2="{q}" v3="{r}"/>\n' for p, q, r in faces[block].tolist()
                ).encode()
            )
        model.write(
            b'</triangles></mesh></object></resources>\n<build><item objectid="1"/></build></model>\n'
        )


# ---- the cases, each run alone in a subprocess ----------------------------------------------------------


def case_quote(path: Path, fmt: str) -> dict[str, Any]:
    from orders_core.contracts import LabourRate, LabourUnit, Material, Quote
    from pricing.limits import Limits
    from pricing.quote import quote_for

    gold = Material(code="AU750", name="Gold 750", density_g_cm3=15.5, price_per_gram_minor=8700)
    labour = [LabourRate(code="FINISHING", name="Finishing", unit=LabourUnit.PER_CM2, amount_minor=90)]
    limits = Limits(
        max_file_bytes=1 << 30, max_unzipped_bytes=1 << 30, max_triangles=10_000_000, time_limit_s=600
    )

    def once() -> Any:
        return quote_for(
            path,
            fmt,
            material=gold,
            labour_rates=labour,
            quantity=1,
            currency="EUR",
            model_sha256="0" * 64,
            limits=limits,
        )

    seconds, result, peak = measured(once)
    started = time.perf_counter()
    once()
    warm = time.perf_counter() - started
    assert isinstance(result, Quote), result
    return {"seconds": seconds, "peak": peak, "warm": warm, "volume": result.figures.volume_mm3}


def case_trimesh(path: Path, fmt: str) -> dict[str, Any]:
    import trimesh

    def once() -> tuple[float, bool]:
        mesh = trimesh.load(str(path), force="mesh")
        return mesh.mass_properties.volume, mesh.is_watertight

    seconds, (volume, watertight), peak = measured(once)
    return {"seconds": seconds, "peak": peak, "volume": volume, "watertight": watertight}


def case_read(path: Path, fmt: str) -> dict[str, Any]:
    def once() -> int:
        if fmt == "stl":
            return len(np.fromfile(path, STL_RECORD, offset=84))
        with zipfile.ZipFile(path) as archive:
            return len(archive.read("3D/3dmodel.model"))

    seconds, _, peak = measured(once)
    return {"seconds": seconds, "peak": peak}


def measured(work: Any) -> tuple[float, Any, int]:
    """Wall time, result, and rise of the peak resident set over the resident set before `work`."""
    with open("/proc/self/statm") as statm:
        before = int(statm.read().split()[1]) * resource.getpagesize()
    started = time.perf_counter()
    result = work()
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return seconds, result, max(0, peak - before)


CASES = {"quote": case_quote, "trimesh": case_trimesh, "read": case_read}


def run_case(case: str, path: Path, fmt: str, repeat: int) -> dict[str, Any]:
    """The fastest of `repeat` runs of `case`, each in a fresh interpreter; its peak is the smallest too."""
    runs = []
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, str(HERE), "--case", case, "--file", str(path), "--format", fmt],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
    best = min(runs, key=lambda r: r["seconds"])
    best["peak"] = min(r["peak"] for r in runs)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000,4000000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-3mf", action="store_true")
    parser.add_argument("--case", choices=CASES)
    parser.add_argument("--file", type=Path)
    parser.add_argument("--format")
    args = parser.parse_args()
    if args.case:
        print(json.dumps(CASES[args.case](args.file, args.format)))
        return
    formats = ["stl"] if args.no_3mf else ["stl", "3mf"]
    print(
        f"{'triangles':>10} {'fmt':>4} {'file MB':>8} | {'quote s':>8} {'warm s':>7} {'peak MB':>8} | "
        f"{'trimesh s':>9} {'peak MB':>8} | {'read s':>7} | "
        f"{'speed-up':>8} {'mem/file':>8} {'tri mem/file':>12}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-quote-") as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            vertices, faces = torus(size)
            for fmt in formats:
                path = Path(tmp) / f"torus-{size}.{fmt}"
                (write_stl if fmt == "stl" else write_3mf)(path, vertices, faces)
                file_mb = path.stat().st_size / 1e6
                # trimesh on millions of triangles in 3MF takes minutes; one run of it says enough
                slow = fmt == "3mf" and size > 1_000_000
                quote = run_case("quote", path, fmt, args.repeat)
                baseline = run_case("trimesh", path, fmt, 1 if slow or size >= 4_000_000 else args.repeat)
                read = run_case("read", path, fmt, args.repeat)
                agree = math.isclose(quote["volume"], baseline["volume"], rel_tol=1e-6)
                print(
                    f"{len(faces):>10,} {fmt:>4} {file_mb:>8.1f} | "
                    f"{quote['seconds']:>8.3f} {quote['warm']:>7.3f} {quote['peak'] / 1e6:>8.0f} | "
                    f"{baseline['seconds']:>9.3f} {baseline['peak'] / 1e6:>8.0f} | {read['seconds']:>7.3f} | "
                    f"{baseline['seconds'] / quote['seconds']:>7.1f}x "
                    f"{quote['peak'] / 1e6 / file_mb:>7.1f}x {baseline['peak'] / 1e6 / file_mb:>11.1f}x"
                    + ("" if agree and baseline["watertight"] else "  (volumes or watertightness disagree!)"),
                    flush=True,
                )
                path.unlink()


if __name__ == "__main__":
    main()
