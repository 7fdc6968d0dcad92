"""Telling which 3D format an upload is and whether its bytes are that format, before anything stores it.

This is the cheap check at the door (magic numbers, sizes, a zip's directory); pricing parses the mesh.
"""

from __future__ import annotations

import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from orders_core.contracts import MODEL_FORMATS

CONTENT_TYPES: dict[str, str] = {
    "model/stl": "stl",
    "model/x.stl-binary": "stl",
    "model/x.stl-ascii": "stl",
    "application/sla": "stl",
    "application/vnd.ms-pki.stl": "stl",
    "application/x-stl": "stl",
    "model/obj": "obj",
    "application/x-tgif": "obj",
    "model/ply": "ply",
    "application/ply": "ply",
    "application/x-ply": "ply",
    "model/3mf": "3mf",
    "application/vnd.ms-package.3dmanufacturing-3dmodel+xml": "3mf",
    "model/gltf-binary": "glb",
}
GENERIC_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream", "text/plain"})
HEAD_BYTES = 65536


@dataclass(frozen=True)
class Identified:
    """An upload whose bytes match its format."""

    format: str
    triangle_count: int | None


@dataclass(frozen=True)
class Unacceptable:
    """Why an upload is refused, and the HTTP status that says so (415 wrong format, 422 bad content)."""

    reason: str
    http_status: int = 422


def claimed_format(content_type: str | None, filename: str | None) -> str | Unacceptable:
    """The format a request names, from `?filename=` or its Content-Type."""
    media = (content_type or "").split(";")[0].strip().lower()
    by_name = PurePosixPath(filename).suffix.lower().lstrip(".") if filename else ""
    if by_name in MODEL_FORMATS:
        return by_name
    if media in CONTENT_TYPES:
        return CONTENT_TYPES[media]
    if by_name or media not in GENERIC_TYPES:
        named = f"filename {filename!r}" if by_name else f"Content-Type {media!r}"
        return Unacceptable(f"{named} is not a model format we accept ({', '.join(MODEL_FORMATS)})", 415)
    return Unacceptable(
        "name the model's format: a Content-Type such as model/stl, or ?filename=ring.stl "
        f"(accepted: {', '.join(MODEL_FORMATS)})",
        415,
    )


def safe_filename(filename: str | None, fmt: str) -> str:
    """A display name without directories, control characters or absurd length."""
    name = PurePosixPath((filename or "").replace("\\", "/")).name
    name = "".join(ch for ch in name if ch.isprintable()).strip()[:200]
    return name or f"model.{fmt}"


def identify(path: Path, fmt: str, max_unzipped_bytes: int) -> Identified | Unacceptable:
    """Check that the file at `path` really is `fmt`."""
    size = path.stat().st_size
    if size == 0:
        return Unacceptable("the upload is empty", 400)
    with path.open("rb") as f:
        head = f.read(HEAD_BYTES)
    check = {"stl": _stl, "obj": _obj, "ply": _ply, "glb": _glb}.get(fmt)
    if check is not None:
        return check(head, size)
    return _three_mf(path, max_unzipped_bytes)


def _stl(head: bytes, size: int) -> Identified | Unacceptable:
    if size >= 84:
        (triangles,) = struct.unpack_from("<I", head, 80)
        if 84 + 50 * triangles == size:
            return Identified("stl", triangles)
    text = head.lstrip().lower()
    if text.startswith(b"solid") and (b"facet" in text or b"endsolid" in text):
        return Identified("stl", None)
    if size >= 84:
        return Unacceptable(
            "not an STL file: a binary STL's size must be 84 + 50 x its triangle count "
            f"({size} bytes does not fit the {triangles} triangles its header names; truncated?)"
        )
    return Unacceptable("not an STL file: too short for binary STL and not ASCII STL")


def _obj(head: bytes, size: int) -> Identified | Unacceptable:
    if b"\0" in head:
        return Unacceptable("not an OBJ file: OBJ is text, this has binary bytes")
    lines = (line.strip() for line in head.splitlines())
    if any(line.startswith((b"v ", b"v\t")) for line in lines):
        return Identified("obj", None)
    return Unacceptable("not an OBJ file: no vertex ('v x y z') lines at its start")


def _ply(head: bytes, size: int) -> Identified | Unacceptable:
    if head.startswith((b"ply\n", b"ply\r\n")) and b"end_header" in head:
        return Identified("ply", None)
    return Unacceptable("not a PLY file: it must start with 'ply' and a header ending in 'end_header'")


def _glb(head: bytes, size: int) -> Identified | Unacceptable:
    if len(head) < 12 or head[:4] != b"glTF":
        return Unacceptable("not a GLB file: the 'glTF' magic number is missing")
    version, length = struct.unpack_from("<II", head, 4)
    if version != 2:
        return Unacceptable(f"GLB version {version} is not supported; export glTF 2.0 binary")
    if length != size:
        return Unacceptable(f"the GLB header says {length} bytes but the file has {size}; truncated?")
    return Identified("glb", None)


def _three_mf(path: Path, max_unzipped_bytes: int) -> Identified | Unacceptable:
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return Unacceptable("not a 3MF file: a 3MF is a zip archive and this is not one")
    unzipped = sum(e.file_size for e in entries)
    if unzipped > max_unzipped_bytes:
        return Unacceptable(
            f"the 3MF would unpack to {unzipped} bytes, more than the {max_unzipped_bytes} allowed", 413
        )
    if not any(e.filename.lower().endswith(".model") for e in entries):
        return Unacceptable("not a 3MF file: the archive holds no 3D/3dmodel.model part")
    return Identified("3mf", None)
