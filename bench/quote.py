"""Quote engine speed and memory against meshlib, trimesh and a bare read, on generated tori of 10k to 4M
triangles, as binary STL, ASCII STL and 3MF.

Run: `.venv/bin/python bench/quote.py [--sizes 10000,100000,1000000,4000000] [--repeat 3]
[--formats stl,ascii,3mf] [--no-3mf] [--no-trimesh]`. `ascii` is ASCII STL as CAD tools write it (`%e`
numbers). meshlib is a bench-only package: `.uv/bin/uv sync --frozen --group bench` installs it (a later
plain `./backbone install` removes it again); without it its columns say nan. Its case is what a quote
checks: load, volume and the count of holes.

Every case runs in a fresh subprocess: wall time and CPU time (all threads': meshlib's loader uses every
core, the quote one) of the work alone (imports excluded), and peak memory as the rise of the process's
peak resident set (VmHWM, reset just before the work) over its resident set then.
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


def write_ascii_stl(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    """ASCII STL as CAD tools write it: `%e` numbers, the normal first, indented keywords."""
    with path.open("w") as f:
        f.write("solid bench torus\n")
        for block in np.array_split(np.arange(len(faces)), max(1, len(faces) // 100_000)):
            corners = vertices[faces[block]]
            normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
            rows = np.concatenate([normals, corners.reshape(-1, 9)], axis=1)
            f.write("".join(ASCII_FACET % tuple(row) for row in rows.tolist()))
        f.write("endsolid bench torus\n")


ASCII_FACET = (
    "  facet normal %e %e %e\n    outer loop\n" + "      vertex %e %e %e\n" * 3 + "    endloop\n  endfacet\n"
)


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

    seconds, result, peak, cpu = measured(once)
    started = time.perf_counter()
    once()
    warm = time.perf_counter() - started
    assert isinstance(result, Quote), result
    return {"seconds": seconds, "cpu": cpu, "peak": peak, "warm": warm, "volume": result.figures.volume_mm3}


def case_meshlib(path: Path, fmt: str) -> dict[str, Any]:
    try:
        import meshlib.mrmeshpy as mr
    except ImportError:
        return MISSING

    def once() -> tuple[float, int]:
        mesh = mr.loadMesh(str(path))
        return mesh.volume(), mesh.topology.findNumHoles()

    seconds, (volume, holes), peak, cpu = measured(once)
    return {"seconds": seconds, "cpu": cpu, "peak": peak, "volume": volume, "holes": holes}


def case_trimesh(path: Path, fmt: str) -> dict[str, Any]:
    import trimesh

    def once() -> tuple[float, bool]:
        mesh = trimesh.load(str(path), force="mesh")
        return mesh.mass_properties.volume, mesh.is_watertight

    seconds, (volume, watertight), peak, cpu = measured(once)
    return {"seconds": seconds, "cpu": cpu, "peak": peak, "volume": volume, "watertight": watertight}


def case_read(path: Path, fmt: str) -> dict[str, Any]:
    def once() -> int:
        if path.read_bytes()[:5] == b"solid":  # ASCII STL: reading the text is all there is to compare
            return len(path.read_bytes())
        if fmt == "stl":
            return len(np.fromfile(path, STL_RECORD, offset=84))
        with zipfile.ZipFile(path) as archive:
            return len(archive.read("3D/3dmodel.model"))

    seconds, _, peak, cpu = measured(once)
    return {"seconds": seconds, "cpu": cpu, "peak": peak}


def measured(work: Any) -> tuple[float, Any, int, float]:
    """Wall time, result, rise of the peak resident set over the resident set before `work`, and the CPU
    time of all the process's threads.

    The peak is reset first (5 to /proc/self/clear_refs): ru_maxrss also counts the imports' peak and,
    through fork, the bench's own resident set, which made small cases look several times bigger.
    """
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")
    with open("/proc/self/statm") as statm:
        before = int(statm.read().split()[1]) * resource.getpagesize()
    started, cpu = time.perf_counter(), time.process_time()
    result = work()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
    return seconds, result, max(0, peak - before), cpu


MISSING = {
    "seconds": math.nan,
    "cpu": math.nan,
    "peak": math.nan,
    "volume": math.nan,
    "holes": 0,
    "watertight": True,
}
"""The figures of a case not run (meshlib on 3MF, which it does not read; trimesh with --no-trimesh)."""

CASES = {"quote": case_quote, "meshlib": case_meshlib, "trimesh": case_trimesh, "read": case_read}


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
    parser.add_argument("--formats", default="stl,ascii,3mf")
    parser.add_argument("--no-3mf", action="store_true")
    parser.add_argument("--no-trimesh", action="store_true", help="skip trimesh (minutes on 4M ASCII or 3MF)")
    parser.add_argument("--case", choices=CASES)
    parser.add_argument("--file", type=Path)
    parser.add_argument("--format")
    args = parser.parse_args()
    if args.case:
        print(json.dumps(CASES[args.case](args.file, args.format)))
        return
    formats = [f for f in args.formats.split(",") if not (args.no_3mf and f == "3mf")]
    print(
        " | ".join(
            [
                f"{'triangles':>10} {'fmt':>5} {'file MB':>7}",
                f"{'quote s':>7} {'cpu s':>6} {'warm s':>6} {'MB':>5}",
                f"{'meshlib s':>9} {'cpu s':>6} {'MB':>5}",
                f"{'trimesh s':>9} {'cpu s':>6} {'MB':>5}",
                f"{'read s':>6}",
                f"{'meshlib/quote cpu':>17} {'wall':>5}",
                f"{'trimesh/quote':>13}",
                f"{'MB/file MB: quote':>17} {'meshlib':>7} {'trimesh':>7}",
            ]
        )
    )
    with tempfile.TemporaryDirectory(prefix="bench-quote-") as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            vertices, faces = torus(size)
            for fmt in formats:
                path = Path(tmp) / f"torus-{size}.{'stl' if fmt == 'ascii' else fmt}"
                {"stl": write_stl, "ascii": write_ascii_stl, "3mf": write_3mf}[fmt](path, vertices, faces)
                file_mb = path.stat().st_size / 1e6
                kind = "stl" if fmt == "ascii" else fmt
                # trimesh on millions of triangles in 3MF or ASCII takes minutes; one run of it says enough
                slow = fmt != "stl" and size > 1_000_000
                quote = run_case("quote", path, kind, args.repeat)
                meshlib = run_case("meshlib", path, kind, args.repeat) if fmt != "3mf" else MISSING
                trimesh = (
                    MISSING
                    if args.no_trimesh
                    else run_case("trimesh", path, kind, 1 if slow or size >= 4_000_000 else args.repeat)
                )
                read = run_case("read", path, kind, args.repeat)
                agree = all(
                    math.isnan(other["volume"])
                    or math.isclose(quote["volume"], other["volume"], rel_tol=1e-6)
                    for other in (meshlib, trimesh)
                )
                mb = {
                    name: case["peak"] / 1e6 for name, case in (("q", quote), ("m", meshlib), ("t", trimesh))
                }
                cells = [
                    f"{len(faces):>10,} {fmt:>5} {file_mb:>7.1f}",
                    f"{quote['seconds']:>7.3f} {quote['cpu']:>6.2f} {quote['warm']:>6.3f} {mb['q']:>5.0f}",
                    f"{meshlib['seconds']:>9.3f} {meshlib['cpu']:>6.2f} {mb['m']:>5.0f}",
                    f"{trimesh['seconds']:>9.3f} {trimesh['cpu']:>6.2f} {mb['t']:>5.0f}",
                    f"{read['seconds']:>6.3f}",
                    f"{meshlib['cpu'] / quote['cpu']:>16.2f}x {meshlib['seconds'] / quote['seconds']:>4.2f}x",
                    f"{trimesh['seconds'] / quote['seconds']:>12.1f}x",
                    f"{mb['q'] / file_mb:>16.2f}x {mb['m'] / file_mb:>6.2f}x {mb['t'] / file_mb:>6.2f}x",
                ]
                healthy = agree and trimesh["watertight"] and not meshlib["holes"]
                print(
                    " | ".join(cells) + ("" if healthy else "  (volumes or watertightness disagree!)"),
                    flush=True,
                )
                path.unlink()


if __name__ == "__main__":
    main()
