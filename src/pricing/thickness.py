"""Local wall thickness: for each triangle, the depth of the solid behind it, by a ray cast inward.

From each triangle's centroid a ray goes along the inverted normal; the first surface it meets is the
far side of the wall, and the distance to it is the wall's thickness there. The figures are area-weighted:
a model is thin where much of its *surface* is thin, whatever the tessellation.

Rays run in Intel Embree 4 (`libembree4`, the build the `embreex` wheel ships in `embreex.libs/`), called
through ctypes rather than through embreex's own Python classes. Measured on the 2-core development machine
(1,024,000-triangle ring, other sessions loading it): embreex's `TriangleMesh` copies the vertices into
Embree one Python-level array index at a time, 2.6 s before a single ray, against 0.65 s for Embree to
take our float32 arrays as shared buffers and build its tree; its `run` then traces one ray at a time,
0.65 s for 1M rays, against 0.33 s for 16-ray packets (`rtcIntersect16`) in two threads (ctypes
releases the GIL). The whole analysis, both rays per triangle: bench/thickness.py and its README.

Each triangle also casts a second ray outward, along its normal. On a clean closed solid the inward ray
leaves the solid through a face whose outward normal runs with it (positive dot product), and the outward
ray meets nothing or a face turned towards it (another part of the model, across a gap). A triangle
failing either says the surface is not a clean closed solid there: inverted normals (the inward ray goes
out into space), holes (it leaves through one), self-intersections and overlapping shells (the outward
ray of a face buried in another part leaves that part through a face turned its way; the inward ray
alone would read a plausible, wrong wall). The area of such triangles makes up `unreliable_share`; above
`UNRELIABLE_SHARE` the figures are not to be trusted and must not reject a model. The outward rays cost
tracing time only: the scene is built once.

Pure: numpy arrays in, a frozen dataclass out; no I/O beyond loading the library once.
"""

from __future__ import annotations

import ctypes
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pricing.meshes import Triangles

UNRELIABLE_SHARE = 0.01
"""Above this share of the area with no proper exit the result is marked unreliable. On clean closed
meshes (boxes, tubes, tori, subdivided rings of 100k-1M triangles) the share measured is 0: rays start at
centroids, away from edges, and the scene is built in Embree's robust mode. An inverted or
self-intersecting mesh gives tens of percent."""

START_RELATIVE = 1e-6
"""Hits closer than this share of the bounding box's diagonal to the ray's start are ignored (Embree's
`tnear`): the start lies on the triangle's own plane only to float32 rounding (about 6e-8 of the
coordinates, which are centred on the box first), and 1e-6 of a 30 mm ring is 0.03 um, far below any wall
that matters."""

MAX_MEASURED = 1_000_000
"""Triangles whose walls are measured. A larger model has a seeded random sample of about this many cast
their rays (the same model, the same sample), into a scene of every triangle, so each sampled ray meets
the true surface; the figures are then area-weighted estimates over the sample. Measured on the 2-core
machine (bench/quote.py, 4M-triangle torus): the analysis of every triangle took 7-9 s of CPU, 1.5 s of
it Embree's tree build and 4-5 s tracing 8M rays, which with the rest of the quote (5 s) broke the 10 s
time limit. A thin part of the 0.5 % that rejects a model holds ~5,000 sampled triangles of a million,
so its share is estimated within a few hundredths of a percent; a thin speck of a few triangles may go
unsampled, which is what the share rule lets through anyway."""

GEOMETRY_CHUNK = 1 << 16
"""Triangles whose normals, areas and centroids are worked out in float64 at a time."""

CHUNK = 1 << 15
"""Rays per batch handed to one thread: 2,048 packets of 16, 2.7 MB of ray records, so a 5M-triangle model
never holds every ray record at once."""

_INVALID = 0xFFFFFFFF
_LANES = 16
_RAY_FIELDS = 21
"""Float32 words per lane in an RTCRayHit16: the ray's 12 (org xyz, tnear, dir xyz, time, tfar, mask, id,
flags), the hit's 9 (Ng xyz, u, v, primID, geomID, instID[1], instPrimID[1]; instPrimID exists only when
Embree is built with instance arrays, so its room is reserved either way)."""
_TNEAR, _TFAR, _MASK, _ID, _FLAGS, _TIME = 3, 8, 9, 10, 11, 7
_PRIM, _GEOM = 17, 18


@dataclass(frozen=True)
class Thickness:
    """Wall thickness of a model, area-weighted over the triangles whose rays behaved (see the module)."""

    minimum_mm: float
    """The thinnest wall found (nan when no ray left the solid properly)."""
    p1_mm: float
    """The 1st percentile by area: 1% of the measured surface is thinner than this."""
    min_wall_mm: float
    """The minimum wall the share below is counted against."""
    area_below_mm2: float
    share_below: float
    """`area_below_mm2` over the whole surface's area."""
    below_low: tuple[float, float, float] | None
    below_high: tuple[float, float, float] | None
    """The box around the triangles thinner than `min_wall_mm` (None when there are none)."""
    rays: int
    measured_share: float
    """The share of the triangles whose walls were measured: 1.0 up to MAX_MEASURED, a sample beyond."""
    unreliable_share: float
    """The share of the area whose inward ray found no proper exit or whose outward ray left the solid."""
    per_triangle: npt.NDArray[np.float32] | None = field(default=None, repr=False, compare=False)
    """The wall behind each triangle of the model, in its order (nan where the rays did not behave or the
    triangle has no area): what the preview (pricing.preview) colours."""

    @property
    def reliable(self) -> bool:
        """Whether the figures describe the model (see UNRELIABLE_SHARE)."""
        return self.unreliable_share <= UNRELIABLE_SHARE


def wall_thickness(
    triangles: Triangles, min_wall_mm: float, threads: int | None = None, max_measured: int = MAX_MEASURED
) -> Thickness:
    """The local wall thickness of the closed, outward-wound triangle soup `triangles` (N, 3, 3), measured
    at every triangle up to `max_measured` of them and at a seeded random sample of that many beyond."""
    t = np.asarray(triangles).reshape(-1, 3, 3)
    corners = t.reshape(-1, 3)
    low = np.array([corners[:, axis].min() for axis in range(3)], np.float64) if len(t) else np.zeros(3)
    high = np.array([corners[:, axis].max() for axis in range(3)], np.float64) if len(t) else np.zeros(3)
    # centred before float32, so a model placed far from the origin keeps its precision in Embree
    centre = (low + high) / 2
    count = len(t)
    # float32 corners as Embree reads them, with room for the 16-byte read of the last vertex
    vertices = np.zeros(count * 9 + 1, np.float32)
    soup = vertices[:-1].reshape(-1, 3, 3)
    normals = np.empty((count, 3), np.float32)
    origins = np.empty((count, 3), np.float32)
    area = np.empty(count, np.float64)
    # in chunks, in float64: whole-array float64 corners and their temporaries were 130 MB at 1M
    # triangles (bench/quote.py peak 345 MB against 209 MB without the analysis)
    for start in range(0, count, GEOMETRY_CHUNK):
        end = min(start + GEOMETRY_CHUNK, count)
        part = t[start:end].astype(np.float64) - centre
        a, b, c = part[:, 0], part[:, 1], part[:, 2]
        cross = _cross(b - a, c - a)
        double_area = np.sqrt(np.einsum("ij,ij->i", cross, cross))
        area[start:end] = double_area / 2
        normals[start:end] = cross / np.where(double_area > 0, double_area, 1.0)[:, None]
        origins[start:end] = (a + b + c) / 3.0
        soup[start:end] = part
    cast = area > 0
    if count > max_measured:
        cast &= np.random.default_rng(count).random(count, dtype=np.float32) < max_measured / count
    directions = -normals
    if not cast.all():  # degenerate faces have no normal to cast along; they have no area either
        origins, directions = origins[cast], directions[cast]
    # each triangle casts twice: inward for the wall, and outward to check it is on the outer skin
    (distance, prim), (_, prim_out) = _first_hits(
        vertices,
        origins,
        directions,
        START_RELATIVE * float(np.linalg.norm(high - low)),
        threads or min(4, os.cpu_count() or 1),
    )
    del vertices, soup, origins
    # Inward, a proper exit meets a face whose outward normal runs with the ray (positive dot product).
    # Outward, the ray leaves into open space: it meets nothing, or a face turned towards it (another
    # part of the model). A face inside another shell (self-intersection, overlapping parts) fails the
    # outward test even when its inward ray reads a plausible wall.
    exits = _facing(normals, prim, directions) > 0
    exits &= ~(_facing(normals, prim_out, directions) < 0)
    rays = 2 * len(prim)
    cast_area = area[cast]
    total = float(area.sum())
    # shares are of the measured area: the whole surface's, unless a sample was measured
    cast_total = float(cast_area.sum())
    measured_share = len(cast_area) / count if count else 1.0
    measured = cast_area[exits]
    depth = distance[exits].astype(np.float64)
    unreliable = float(cast_area[~exits].sum()) / cast_total if cast_total > 0 else 1.0
    per_triangle = np.full(count, np.nan, np.float32)
    per_triangle[np.flatnonzero(cast)[exits]] = distance[exits]
    if len(depth) == 0:
        nan = float("nan")
        return Thickness(
            nan, nan, min_wall_mm, 0.0, 0.0, None, None, rays, measured_share, unreliable, per_triangle
        )
    order = np.argsort(depth, kind="stable")
    cumulative = np.cumsum(measured[order])
    p1 = float(depth[order][min(int(np.searchsorted(cumulative, 0.01 * cumulative[-1])), len(depth) - 1)])
    thin = np.flatnonzero(cast)[np.flatnonzero(exits)[depth < min_wall_mm]]
    share_below = float(area[thin].sum()) / cast_total
    below_low = below_high = None
    if len(thin):
        points = t[thin].reshape(-1, 3).astype(np.float64)
        below_low = _point(points.min(axis=0))
        below_high = _point(points.max(axis=0))
    return Thickness(
        minimum_mm=float(depth[order[0]]),
        p1_mm=p1,
        min_wall_mm=min_wall_mm,
        area_below_mm2=share_below * total,
        share_below=share_below,
        below_low=below_low,
        below_high=below_high,
        rays=rays,
        measured_share=measured_share,
        unreliable_share=unreliable,
        per_triangle=per_triangle,
    )


def _facing(
    normals: npt.NDArray[np.float32], prim: npt.NDArray[np.uint32], directions: npt.NDArray[np.float32]
) -> npt.NDArray[np.float64]:
    """Per ray, the cosine between `directions` (the inward rays') and the hit face's outward normal;
    nan for a miss."""
    faced = np.full(len(prim), np.nan)
    hit = prim != _INVALID
    faced[hit] = np.einsum("ij,ij->i", normals[prim[hit].astype(np.int64)], directions[hit])
    return faced


def _cross(u: npt.NDArray[np.float64], v: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    # by columns: np.cross on (N, 3) takes about twice as long (0.21 s at 1M)
    n = np.empty_like(u)
    n[:, 0] = u[:, 1] * v[:, 2] - u[:, 2] * v[:, 1]
    n[:, 1] = u[:, 2] * v[:, 0] - u[:, 0] * v[:, 2]
    n[:, 2] = u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0]
    return n


def _point(p: npt.NDArray[np.float64]) -> tuple[float, float, float]:
    return float(p[0]), float(p[1]), float(p[2])


def _first_hits(
    vertices: npt.NDArray[np.float32],
    origins: npt.NDArray[np.float32],
    directions: npt.NDArray[np.float32],
    tnear: float,
    threads: int,
) -> list[tuple[npt.NDArray[np.float32], npt.NDArray[np.uint32]]]:
    """For the rays along `directions` and then the reversed ones: the distance to and triangle index of
    each ray's first hit (index _INVALID for a miss) in the soup `vertices` (flat float32 corners, three
    a triangle, and one float of padding)."""
    count = len(origins)
    results = [(np.full(count, np.inf, np.float32), np.full(count, _INVALID, np.uint32)) for _ in range(2)]
    if count == 0:
        return results
    embree = _embree()
    indices = np.arange((vertices.size - 1) // 3, dtype=np.uint32)
    scene = embree.scene(vertices, indices, len(indices) // 3)
    try:
        tasks = [(way, start) for way in range(2) for start in range(0, count, CHUNK)]

        def run(task: tuple[int, int]) -> None:
            way, start = task
            end = min(start + CHUNK, count)
            distance, prim = results[way]
            embree.trace(
                scene,
                origins[start:end],
                directions[start:end],
                1.0 - 2.0 * way,
                tnear,
                distance[start:end],
                prim[start:end],
            )

        with ThreadPoolExecutor(max(1, threads)) as pool:
            list(pool.map(run, tasks))
    finally:
        embree.release(scene)
    del indices  # shared with Embree, like `vertices`: alive until the scene is released
    return results


class _Embree:
    """The few Embree 4 calls the analysis needs, on one device per process."""

    def __init__(self, library: ctypes.CDLL) -> None:
        vp, i, u, size = ctypes.c_void_p, ctypes.c_int, ctypes.c_uint, ctypes.c_size_t
        signatures: dict[str, tuple[Any, list[Any]]] = {
            "rtcNewDevice": (vp, [ctypes.c_char_p]),
            "rtcGetDeviceError": (i, [vp]),
            "rtcNewScene": (vp, [vp]),
            "rtcSetSceneFlags": (None, [vp, i]),
            "rtcNewGeometry": (vp, [vp, i]),
            "rtcSetSharedGeometryBuffer": (None, [vp, i, u, i, vp, size, size, size]),
            "rtcCommitGeometry": (None, [vp]),
            "rtcAttachGeometry": (u, [vp, vp]),
            "rtcReleaseGeometry": (None, [vp]),
            "rtcCommitScene": (None, [vp]),
            "rtcReleaseScene": (None, [vp]),
            "rtcIntersect16": (None, [vp, vp, vp, vp]),
        }
        for name, (result, arguments) in signatures.items():
            function = getattr(library, name)
            function.restype = result
            function.argtypes = arguments
        self._lib = library
        self._device = library.rtcNewDevice(None)
        if not self._device:
            raise RuntimeError("Embree could not create a device")

    def scene(self, vertices: npt.NDArray[np.float32], indices: npt.NDArray[np.uint32], count: int) -> int:
        """A committed scene over shared buffers (`vertices` float32 xyz, `indices` uint32 triples)."""
        lib = self._lib
        scene = lib.rtcNewScene(self._device)
        # robust: a ray through a shared edge finds one of its two faces instead of slipping between
        lib.rtcSetSceneFlags(scene, 1 << 2)  # RTC_SCENE_FLAG_ROBUST
        geometry = lib.rtcNewGeometry(self._device, 0)  # RTC_GEOMETRY_TYPE_TRIANGLE
        lib.rtcSetSharedGeometryBuffer(  # RTC_BUFFER_TYPE_VERTEX, RTC_FORMAT_FLOAT3
            geometry, 1, 0, 0x9003, vertices.ctypes.data, 0, 12, (vertices.size - 1) // 3
        )
        lib.rtcSetSharedGeometryBuffer(  # RTC_BUFFER_TYPE_INDEX, RTC_FORMAT_UINT3
            geometry, 0, 0, 0x5003, indices.ctypes.data, 0, 12, count
        )
        lib.rtcCommitGeometry(geometry)
        lib.rtcAttachGeometry(scene, geometry)
        lib.rtcReleaseGeometry(geometry)
        lib.rtcCommitScene(scene)
        error = lib.rtcGetDeviceError(self._device)
        if error:
            lib.rtcReleaseScene(scene)
            raise RuntimeError(f"Embree could not build the scene (error {error})")
        return int(scene)

    def release(self, scene: int) -> None:
        self._lib.rtcReleaseScene(scene)

    def trace(
        self,
        scene: int,
        origins: npt.NDArray[np.float32],
        directions: npt.NDArray[np.float32],
        sign: float,
        tnear: float,
        distance: npt.NDArray[np.float32],
        prim: npt.NDArray[np.uint32],
    ) -> None:
        """Into `distance` and `prim`, each ray's first hit along `sign` x `directions`: its distance
        and triangle index (left as they are on a miss)."""
        count = len(origins)
        packets = -(-count // _LANES)
        words = packets * _RAY_FIELDS * _LANES
        raw = np.empty(words * 4 + packets * _LANES * 4 + 128, np.uint8)
        # Embree requires RTCRayHit16 and its valid mask 64-byte aligned
        offset = (-raw.ctypes.data) % 64
        records = raw[offset : offset + words * 4].view(np.float32).reshape(packets, _RAY_FIELDS, _LANES)
        valid_at = offset + words * 4
        valid = raw[valid_at : valid_at + packets * _LANES * 4].view(np.int32)
        as_uint = records.view(np.uint32)
        for axis in range(3):
            # padding lanes are masked off, but keep their rays well-formed: from 0 along +x
            column = np.zeros(packets * _LANES, np.float32)
            column[:count] = origins[:, axis]
            records[:, axis, :] = column.reshape(packets, _LANES)
            column[:count] = directions[:, axis] * sign
            column[count:] = 1.0 if axis == 0 else 0.0
            records[:, 4 + axis, :] = column.reshape(packets, _LANES)
        records[:, _TNEAR, :] = tnear
        records[:, _TIME, :] = 0.0
        records[:, _TFAR, :] = np.inf
        as_uint[:, _MASK, :] = _INVALID
        as_uint[:, _ID, :] = 0
        as_uint[:, _FLAGS, :] = 0
        as_uint[:, _GEOM, :] = _INVALID
        as_uint[:, _PRIM, :] = _INVALID
        valid[:] = 0
        valid[:count] = -1
        intersect = self._lib.rtcIntersect16
        base, mask_base, stride = records.ctypes.data, valid.ctypes.data, _RAY_FIELDS * _LANES * 4
        # one foreign call per 16 rays, 2,048 a chunk; the loop is over packets, never over triangles
        for packet in range(packets):
            intersect(mask_base + packet * 64, scene, base + packet * stride, None)
        hit = as_uint[:, _GEOM, :].reshape(-1)[:count] != _INVALID
        distance[hit] = records[:, _TFAR, :].reshape(-1)[:count][hit]
        prim[hit] = as_uint[:, _PRIM, :].reshape(-1)[:count][hit]

    def check(self) -> None:
        """Trace 17 rays (two packets) at one triangle and raise unless all hit it at the right distance:
        a library whose RTCRayHit16 differs from the layout above (a larger instance stack, say) would
        spill the first packet's hits into the second's rays, which then miss."""
        vertices = np.array([0, 0, 0, 1, 0, 0, 0, 1, 0, 0], np.float32)
        scene = self.scene(vertices, np.arange(3, dtype=np.uint32), 1)
        try:
            rays = _LANES + 1
            distance = np.full(rays, np.inf, np.float32)
            prim = np.full(rays, _INVALID, np.uint32)
            origins = np.tile(np.array([0.25, 0.25, 1.0], np.float32), (rays, 1))
            down = np.tile(np.array([0.0, 0.0, -1.0], np.float32), (rays, 1))
            self.trace(scene, origins, down, 1.0, 1e-6, distance, prim)
        finally:
            self.release(scene)
        if not (np.allclose(distance, 1.0, atol=1e-6) and (prim == 0).all()):
            raise RuntimeError(f"Embree's ray records are not laid out as this module expects: {distance}")


_lock = threading.Lock()
_loaded: _Embree | None = None


def _embree() -> _Embree:
    global _loaded
    with _lock:
        if _loaded is None:
            embree = _Embree(ctypes.CDLL(str(_library_path())))
            embree.check()
            _loaded = embree
        return _loaded


def _library_path() -> Path:
    """libembree4 from the embreex wheel (auditwheel names it libembree4-<hash>.so.4)."""
    import embreex

    site = Path(embreex.__file__).resolve().parent.parent
    found = sorted((site / "embreex.libs").glob("libembree4*.so*")) + sorted(
        (site / "embreex" / ".dylibs").glob("libembree4*.dylib")
    )
    if not found:
        raise RuntimeError(f"libembree4 is not where the embreex wheel puts it ({site / 'embreex.libs'})")
    return found[0]


def describe_box(low: tuple[float, float, float], high: tuple[float, float, float]) -> str:
    """A box as 'x 1.00 to 2.00, y ..., z ... mm', the model's own coordinates."""
    return (
        ", ".join(f"{axis} {a:.2f} to {b:.2f}" for axis, a, b in zip("xyz", low, high, strict=True)) + " mm"
    )
