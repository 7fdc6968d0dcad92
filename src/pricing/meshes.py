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
        estimate = data.count(b"endloop") or data.count(b"ENDLOOP")
        if estimate > limits.max_triangles:
            return _too_many(estimate, limits)
        parsed = _ascii_stl(data)
        # what the plain reader cannot follow (comments, odd layouts) trimesh may still read
        return parsed if parsed is not None else _with_trimesh(data, "stl", limits)
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


ASCII_CHUNK = 1 << 24
"""Bytes of ASCII STL parsed at a time (cut after an `endfacet`), so parsing holds little besides the
text."""
_VERTEX = np.frombuffer(b"vertex", np.uint8)
_ZERO, _NINE, _DOT, _E, _PLUS, _MINUS = (ord(c) for c in "09.e+-")
_POW10 = 10.0 ** np.arange(23)
"""Powers of ten that float64 holds exactly: a mantissa times or over one of them rounds once."""


def _ascii_stl(data: bytes) -> Triangles | None:
    """ASCII STL in vectorised code: the three numbers after each `vertex` are found and parsed by numpy
    over the bytes, a chunk at a time; normals, names and the other keywords are skipped. None when the
    text is not plain facets with plain decimal numbers (the caller hands it to trimesh).

    trimesh's parser took about 5 s and 1.5 GB for a million triangles (bench/quote.py measures both).
    """
    parts: list[Triangles] = []
    start = 0
    while start < len(data):
        cut = data.find(b"endfacet", start + ASCII_CHUNK)
        cut = data.find(b"ENDFACET", start + ASCII_CHUNK) if cut < 0 else cut
        end = len(data) if cut < 0 else cut + len(b"endfacet")
        chunk = data[start:end].lower()
        corners = _vertex_numbers(np.frombuffer(chunk, np.uint8))
        if corners is None or len(corners) != 9 * chunk.count(b"endloop"):
            return None
        parts.append(corners.reshape(-1, 3, 3).astype(np.float32))
        start = end
    triangles = np.concatenate(parts) if len(parts) != 1 else parts[0]
    triangles += 0.0  # -0.0 and 0.0 are one corner, as in binary STL
    return triangles


def _vertex_numbers(text: npt.NDArray[np.uint8]) -> npt.NDArray[np.float64] | None:
    """The three tokens after each `vertex` in `text` (lower case), parsed; None if one is not a plain
    decimal number of at most 18 significant digits."""
    n = len(text) - len(_VERTEX)
    if n <= 0:
        return np.zeros(0)
    hit = text[:n] == _VERTEX[0]
    for i in range(1, len(_VERTEX)):
        hit &= text[i : n + i] == _VERTEX[i]
    hit[: n - 1] &= text[len(_VERTEX) : n - 1 + len(_VERTEX)] <= 32  # the whole word, not a prefix
    at = np.flatnonzero(hit)
    blank = text <= 32  # space, tab, CR, LF
    inside = ~blank
    starts = np.flatnonzero(inside & np.concatenate(([True], blank[:-1])))
    ends = np.flatnonzero(inside & np.concatenate((blank[1:], [True]))) + 1
    del blank, inside, hit
    word = np.searchsorted(starts, at)
    if len(word) and (word.max() + 3 >= len(starts) or not np.array_equal(starts[word], at)):
        return None  # "vertex" inside another word, or the text ends too soon
    tokens = (word[:, None] + np.arange(1, 4)).reshape(-1)
    return _parse_decimals(text, starts[tokens], ends[tokens])


_DIGIT, _DOT_CLASS, _E_CLASS, _MINUS_CLASS, _PLUS_CLASS, _PAD, _OTHER = range(7)
_KINDS = np.full(256, _OTHER, np.uint8)
_KINDS[_ZERO : _NINE + 1] = _DIGIT
_KINDS[[_DOT, _E, _MINUS, _PLUS, 0]] = [_DOT_CLASS, _E_CLASS, _MINUS_CLASS, _PLUS_CLASS, _PAD]
"""The kind of each byte of a number, looked up in one step."""


def _parse_decimals(
    text: npt.NDArray[np.uint8], starts: npt.NDArray[np.intp], ends: npt.NDArray[np.intp]
) -> npt.NDArray[np.float64] | None:
    """Each token text[start:end] as a float: [+-]digits[.digits][e[+-]digits]; None if a token is
    anything else.

    Tokens are grouped by their layout (where the sign, dot, e and digits stand), which an exporter
    keeps nearly constant (%e gives four: the two signs of the number and of its exponent). Within a
    layout every digit has a fixed column and weight, so a group is a few array operations whatever its
    size. The mantissa is read as an integer and scaled by one exact power of ten: a number rounds once
    (to the nearest float64 for mantissas of up to 15 digits and exponents within 22).
    """
    if len(starts) == 0:
        return np.zeros(0)
    lengths = ends - starts
    width = int(lengths.max())
    if width > 40:
        return None
    columns = np.arange(width)
    # each token's bytes as a row, copied straight from a sliding window over the text
    padded = np.concatenate([text, np.zeros(width, np.uint8)])
    chars = np.lib.stride_tricks.sliding_window_view(padded, width)[starts]
    chars[columns >= lengths[:, None]] = 0
    kinds = _KINDS[chars]
    dot_at = np.where((kinds == _DOT_CLASS).any(axis=1), (kinds == _DOT_CLASS).argmax(axis=1), width)
    e_at = np.where((kinds == _E_CLASS).any(axis=1), (kinds == _E_CLASS).argmax(axis=1), width)
    after_e = kinds[np.arange(len(kinds)), np.minimum(e_at + 1, width - 1)]
    layout = (((lengths * 8 + kinds[:, 0]) * 48 + dot_at) * 48 + e_at) * 8 + after_e
    layouts, group = np.unique(layout, return_inverse=True)
    order = np.argsort(group.reshape(-1), kind="stable")
    bounds = np.searchsorted(group.reshape(-1)[order], np.arange(len(layouts) + 1))
    values = np.empty(len(starts), np.float64)
    for g in range(len(layouts)):
        rows = order[bounds[g] : bounds[g + 1]]
        pattern = kinds[rows[0]]
        parts = _layout(pattern)
        if parts is None or not (kinds[rows] == pattern).all():
            return None
        mantissa_columns, fraction, exponent_columns, negative, exponent_negative = parts
        mantissa = _digits_value(chars, rows, mantissa_columns)
        exponent = _digits_value(chars, rows, exponent_columns)
        scale = (-exponent if exponent_negative else exponent) - fraction
        value = mantissa.astype(np.float64)
        power = _POW10[np.minimum(np.abs(scale), 22)]
        value = np.where(scale >= 0, value * power, value / power)
        far = np.abs(scale) > 22
        if far.any():  # beyond one exact power of ten: rare in STL; scale in two steps
            value[far] = mantissa[far] * np.power(10.0, scale[far].astype(np.float64))
        values[rows] = -value if negative else value
    return values


def _digits_value(
    chars: npt.NDArray[np.uint8], rows: npt.NDArray[np.intp], columns: npt.NDArray[np.intp]
) -> npt.NDArray[np.int64]:
    """The integer the digits in `columns` of `rows` spell."""
    value = np.zeros(len(rows), np.int64)
    for column in columns:
        value *= 10
        value += chars[rows, column]
        value -= _ZERO
    return value


def _layout(
    pattern: npt.NDArray[np.uint8],
) -> tuple[npt.NDArray[np.intp], int, npt.NDArray[np.intp], bool, bool] | None:
    """Where a layout's mantissa and exponent digits stand, how many mantissa digits follow the dot,
    and the two signs; None unless it is [+-]digits[.digits][e[+-]digits] with 1-18 mantissa digits."""
    kinds = [int(k) for k in pattern if k != _PAD]
    negative = kinds[:1] == [_MINUS_CLASS]
    at = 1 if kinds[:1] in ([_MINUS_CLASS], [_PLUS_CLASS]) else 0
    e = kinds.index(_E_CLASS) if _E_CLASS in kinds else len(kinds)
    mantissa = kinds[at:e]
    if mantissa.count(_DOT_CLASS) > 1 or any(k not in (_DIGIT, _DOT_CLASS) for k in mantissa):
        return None
    digits = [at + i for i, k in enumerate(mantissa) if k == _DIGIT]
    if not 1 <= len(digits) <= 18:
        return None
    dot = at + mantissa.index(_DOT_CLASS) if _DOT_CLASS in mantissa else e
    fraction = sum(1 for i in digits if i > dot)
    exponent_negative = False
    exponent_digits: list[int] = []
    if e < len(kinds):
        rest = kinds[e + 1 :]
        exponent_negative = rest[:1] == [_MINUS_CLASS]
        skip = 1 if rest[:1] in ([_MINUS_CLASS], [_PLUS_CLASS]) else 0
        exponent_digits = [e + 1 + skip + i for i in range(len(rest) - skip)]
        if not 1 <= len(exponent_digits) <= 4 or any(k != _DIGIT for k in rest[skip:]):
            return None
    return (
        np.array(digits, np.intp),
        fraction,
        np.array(exponent_digits, np.intp),
        negative,
        exponent_negative,
    )


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
