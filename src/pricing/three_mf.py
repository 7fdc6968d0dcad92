"""3MF packages: unpacking the model part within a byte budget, its unit, and a fast read of plain meshes.

A 3MF is a zip of XML. The zip's declared sizes are only a first, cheap refusal: the budget is counted
on the bytes actually inflated, so a zip bomb that lies in its headers costs at most the budget.

The fast read handles what slicers and CAD tools write for a printable part: `<object>`s holding a
`<mesh>` of `<vertex x y z>` and `<triangle v1 v2 v3>`, placed by `<build><item>`s with an optional
transform. It turns the XML into numbers with bytes.translate and numpy's C parser, never a Python object
per vertex. Anything else (components, property indices, parts in other files) returns None, and the
caller reads the package with trimesh instead.
"""

from __future__ import annotations

import io
import re
import warnings
import zipfile
import zlib

import numpy as np
import numpy.typing as npt

from pricing.limits import Limits, MiB
from pricing.rejections import Reason, Rejection

UNITS_MM = {
    "micron": 0.001,
    "millimeter": 1.0,
    "centimeter": 10.0,
    "inch": 25.4,
    "foot": 304.8,
    "meter": 1000.0,
}
_UNIT = re.compile(rb"<(?:[\w.-]+:)?model\b[^>]*?\sunit\s*=\s*[\"']([^\"']*)[\"']")
_OBJECT = re.compile(rb"<(?:[\w.-]+:)?object\b([^>]*)>")
_BUILD = re.compile(rb"<(?:[\w.-]+:)?build\b")
_ITEM = re.compile(rb"<(?:[\w.-]+:)?item\b([^>]*)>")
_ATTRIBUTE = re.compile(rb"([\w:.-]+)\s*=\s*[\"']([^\"']*)[\"']")
_IDENTITY = np.array([1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0], np.float64)

# bytes.translate tables: keep the characters of numbers, make every other byte a separator
_NUMERIC = bytes(b if chr(b) in "0123456789.+-eE" else 32 for b in range(256))
_INTEGER = bytes(b if chr(b) in "0123456789+-" else 32 for b in range(256))
# Deleting these leaves only names and "=" ("e" goes too, being an exponent's as well as vertex's), so a
# plain vertex list reads "vrtxx=y=z=" per vertex and a triangle list "trianglv=v=v=" per triangle. Any
# other attribute, element, entity or stray word shows.
_NOT_NAMES = bytes(b for b in range(256) if not ((chr(b).isalpha() and chr(b) not in "eE") or chr(b) == "="))
_VERTEX_NAMES = b"vrtxx=y=z="
_TRIANGLE_NAMES = b"trianglv=v=v="


def model_part(data: bytes, limits: Limits) -> tuple[bytes, float] | Rejection:
    """The package's root model part and the millimetres in its unit."""
    parts = _unzipped_model_parts(data, limits)
    if isinstance(parts, Rejection):
        return parts
    root = next((name for name in parts if name.lower().endswith("3d/3dmodel.model")), None)
    if root is None:
        return _unreadable("the 3MF archive holds no 3D/3dmodel.model part")
    model = parts[root]
    found = _UNIT.search(model, 0, 4096)
    unit = found.group(1).decode("ascii", "replace") if found else "millimeter"
    if unit not in UNITS_MM:
        return _unreadable(f"the 3MF names an unknown unit {unit!r}")
    return model, UNITS_MM[unit]


def _unzipped_model_parts(data: bytes, limits: Limits) -> dict[str, bytes] | Rejection:
    """The archive's `.model` parts, unpacked under the limit counted on the bytes actually produced."""
    budget = limits.max_unzipped_bytes
    refused = Rejection(
        reason=Reason.FILE_TOO_LARGE,
        detail=f"the 3MF unpacks to more than the {budget / MiB:.0f} MB we accept",
    )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            models = [i for i in archive.infolist() if i.filename.lower().endswith(".model")]
            if _declared_bytes(models) > budget:
                return refused
            parts: dict[str, bytes] = {}
            for info in models:
                chunks: list[bytes] = []
                with archive.open(info) as member:
                    while chunk := member.read(MiB):
                        budget -= len(chunk)
                        if budget < 0:
                            return refused
                        chunks.append(chunk)
                parts[info.filename] = b"".join(chunks)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, ValueError):
        return _unreadable("the 3MF file is not a readable zip archive (truncated, corrupt or encrypted)")
    return parts


def _declared_bytes(infos: list[zipfile.ZipInfo]) -> int:
    """What the zip's headers claim the parts unpack to: a cheap first refusal, not to be trusted."""
    return sum(info.file_size for info in infos)


def mesh_triangles(model: bytes) -> npt.NDArray[np.float64] | None:
    """The build's triangles in the model's unit, or None if the model needs the general reader."""
    meshes: dict[bytes, npt.NDArray[np.float64]] = {}
    # Regexes and scans skip the vertex and triangle lists (nearly all of the bytes): `outside` is
    # where the text after the last list read begins.
    outside = 0
    while (found := _OBJECT.search(model, outside)) is not None:
        object_id = _attributes(found.group(1)).get(b"id")
        read = _mesh(model, found.end())
        if object_id is None or read is None or _more_than_meshes(model, outside, read[1]):
            return None
        meshes[object_id], outside = read[0], read[2]
    if _more_than_meshes(model, outside, len(model)):
        return None
    placed = []
    build = _BUILD.search(model, outside)
    for item in _ITEM.finditer(model, build.end() if build else len(model)):
        attributes = _attributes(item.group(1))
        mesh = meshes.get(attributes.get(b"objectid", b""))
        transform = _transform(attributes.get(b"transform"))
        if mesh is None or transform is None:
            return None
        placed.append(_placed(mesh, transform))
    if not placed:
        return None
    return np.concatenate(placed) if len(placed) > 1 else placed[0]


def _more_than_meshes(model: bytes, start: int, end: int) -> bool:
    """Whether model[start:end] uses components or parts in other files, which the fast read skips."""
    return model.find(b"component", start, end) >= 0 or model.find(b"path=", start, end) >= 0


def _mesh(model: bytes, start: int) -> tuple[npt.NDArray[np.float64], int, int] | None:
    """The triangles of the mesh after `start`, where its vertex list begins and its triangle list ends."""
    vertex_span = _element_span(model, b"vertices", start)
    if vertex_span is None or model.find(b"object", start, vertex_span[0]) >= 0:
        return None
    triangle_span = _element_span(model, b"triangles", vertex_span[1])
    if triangle_span is None:
        return None
    vertices = model[vertex_span[0] : vertex_span[1]]
    triangles = model[triangle_span[0] : triangle_span[1]]
    count, faces_count = vertices.count(b"<"), triangles.count(b"<")
    if vertices.translate(None, _NOT_NAMES) != _VERTEX_NAMES * count:
        return None
    if triangles.translate(None, _NOT_NAMES) != _TRIANGLE_NAMES * faces_count:
        return None
    points = _numbers(vertices.replace(b"vertex", b"").translate(_NUMERIC), np.float64, 3 * count)
    # the digits of the names come along: 1, v1's value, 2, v2's value, 3, v3's value
    numbered = _numbers(triangles.translate(_INTEGER), np.int64, 6 * faces_count)
    if points is None or numbered is None:
        return None
    numbered = numbered.reshape(-1, 6)
    faces = numbered[:, 1::2]
    in_order = bool(np.all(numbered[:, 0::2] == np.array([1, 2, 3])))
    if not in_order or (faces_count and (faces.min() < 0 or faces.max() >= count)):
        return None
    return points.reshape(-1, 3)[faces], vertex_span[0], triangle_span[1]


def _element_span(model: bytes, name: bytes, start: int) -> tuple[int, int] | None:
    """Where the content of the first `<name>` element (any namespace prefix) after `start` lies."""
    opening = re.compile(rb"<(?:[\w.-]+:)?" + name + rb"\s*>").search(model, start)
    if opening is None:
        return None
    # bytes.find first: a regex scanning tens of megabytes for the closing tag is several times slower
    closing_at = model.find(b"</" + name + b">", opening.end())
    if closing_at < 0:
        closing = re.compile(rb"</(?:[\w.-]+:)?" + name + rb"\s*>").search(model, opening.end())
        if closing is None:
            return None
        closing_at = closing.start()
    return opening.end(), closing_at


def _numbers(text: bytes, dtype: type[np.generic], expected: int) -> npt.NDArray[np.generic] | None:
    with warnings.catch_warnings():
        # numpy warns, then stops, at text it cannot parse; for us that is a file to read another way
        warnings.simplefilter("error", DeprecationWarning)
        try:
            values = np.fromstring(text, dtype=dtype, sep=" ")
        except (ValueError, DeprecationWarning):
            return None
    return values if len(values) == expected else None


def _attributes(text: bytes) -> dict[bytes, bytes]:
    return {name: value for name, value in _ATTRIBUTE.findall(text)}


def _transform(text: bytes | None) -> npt.NDArray[np.float64] | None:
    """The 12 numbers of a 3MF transform (row-vector convention), identity when absent."""
    if text is None:
        return _IDENTITY
    try:
        values = np.array(text.split(), np.float64)
    except ValueError:
        return None
    return values if len(values) == 12 and np.isfinite(values).all() else None


def _placed(mesh: npt.NDArray[np.float64], transform: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    if np.array_equal(transform, _IDENTITY):
        return mesh
    linear, shift = transform[:9].reshape(3, 3), transform[9:]
    placed: npt.NDArray[np.float64] = mesh @ linear + shift
    if np.linalg.det(linear) < 0:
        # a mirroring placement turns the faces inside out; wind them back
        placed = placed[:, ::-1]
    return placed


def _unreadable(detail: str) -> Rejection:
    return Rejection(reason=Reason.UNREADABLE, detail=detail)
