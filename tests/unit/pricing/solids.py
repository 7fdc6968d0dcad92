"""Test solids with known volumes, and the file formats to carry them, generated rather than committed."""

from __future__ import annotations

import io
import math
import zipfile
from typing import Any

import numpy as np
import numpy.typing as npt
import trimesh

from orders_core.contracts import LabourRate, LabourUnit, Material

Array = npt.NDArray[np.float64]

GOLD = Material(code="AU750", name="Gold 750 (18k)", density_g_cm3=15.5, price_per_gram_minor=8700)
SILVER = Material(
    code="AG925",
    name="Sterling silver 925",
    density_g_cm3=10.4,
    price_per_gram_minor=160,
    casting_loss_permille=80,
)
LABOUR = (
    LabourRate(code="FINISHING", name="Finishing and polishing", unit=LabourUnit.PER_CM2, amount_minor=90),
    LabourRate(code="CASTING", name="Casting", unit=LabourUnit.PER_PIECE, amount_minor=1500),
    LabourRate(
        code="SETUP", name="Order set-up and model check", unit=LabourUnit.PER_ORDER, amount_minor=2500
    ),
)
SHA = "ab" * 32


def box(x: float, y: float, z: float) -> Array:
    """An axis-aligned box with a corner at the origin, faces wound outward, as (12, 3, 3)."""
    mesh = trimesh.creation.box(extents=(x, y, z))
    return np.asarray(mesh.vertices[mesh.faces] + np.array([x, y, z]) / 2, np.float64)


def torus(major: float, minor: float, around: int, across: int) -> Array:
    """A torus: `around` sections of the ring, `across` sections of the tube, faces wound outward."""
    theta = 2 * np.pi * np.arange(around) / around
    phi = 2 * np.pi * np.arange(across) / across
    ring = major + minor * np.cos(phi)
    points = np.stack(
        [
            np.outer(np.cos(theta), ring),
            np.outer(np.sin(theta), ring),
            np.broadcast_to(minor * np.sin(phi), (around, across)),
        ],
        axis=-1,
    ).reshape(-1, 3)
    i, j = np.meshgrid(np.arange(around), np.arange(across), indexing="ij")
    i1, j1 = (i + 1) % around, (j + 1) % across
    a, b, c, d = i * across + j, i1 * across + j, i1 * across + j1, i * across + j1
    faces = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    return np.asarray(points[faces], np.float64)


def ring(band: float, prong: float) -> Array:
    """A band of rectangular section (radial wall `band`, 3 mm tall, 18 mm inside) and a round prong of
    diameter `prong` standing out 5 mm along +x from half a millimetre inside the band, unioned into one
    closed solid (manifold3d)."""
    body = trimesh.creation.annulus(r_min=9.0, r_max=9.0 + band, height=3.0, sections=256)
    claw = trimesh.creation.cylinder(radius=prong / 2, height=5.5, sections=64)
    claw.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, (0, 1, 0)))
    claw.apply_translation((9.0 + band + 2.25, 0.0, 0.0))
    joined = trimesh.boolean.union([body, claw], engine="manifold")
    assert joined.is_watertight and joined.volume > 0
    return np.asarray(joined.triangles, np.float64)


def torus_volume(major: float, minor: float, around: int, across: int) -> float:
    """The exact volume of `torus(...)`: its profile is a regular polygon swept through a polygonal ring.

    A profile of area A whose centroid lies at R from the axis, swept by n planar sectors, encloses
    n sin(2 pi / n) R A (Pappus' theorem with the ring's polygon in place of the circle).
    """
    profile = across / 2 * minor**2 * math.sin(2 * math.pi / across)
    return around * math.sin(2 * math.pi / around) * major * profile


def icosphere(radius: float, subdivisions: int) -> Array:
    """A geodesic sphere with every vertex on the sphere of `radius`."""
    mesh = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return np.asarray(mesh.vertices[mesh.faces], np.float64)


def inradius(triangles: Array) -> float:
    """The distance from the origin to the nearest face plane: the largest ball a convex solid holds."""
    normals = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    distances = np.einsum("ij,ij->i", normals, triangles[:, 0]) / np.linalg.norm(normals, axis=1)
    return float(distances.min())


def rotation(w: float, x: float, y: float, z: float) -> Array:
    """The rotation matrix of the quaternion (w, x, y, z), normalised."""
    n = math.sqrt(w * w + x * x + y * y + z * z)
    w, x, y, z = w / n, x / n, y / n, z / n
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def binary_stl(triangles: npt.NDArray[Any], count: int | None = None) -> bytes:
    """A binary STL file; `count` overrides the triangle count in the header."""
    records = np.zeros(len(triangles), np.dtype([("n", "<f4", (3,)), ("v", "<f4", (3, 3)), ("a", "<u2")]))
    records["v"] = triangles
    header = b"binary stl".ljust(80, b" ") + np.uint32(len(triangles) if count is None else count).tobytes()
    return header + records.tobytes()


def indexed(triangles: Array) -> tuple[Array, npt.NDArray[np.int64]]:
    """Shared vertices and faces indexing them."""
    vertices, faces = np.unique(triangles.reshape(-1, 3), axis=0, return_inverse=True)
    return vertices, faces.reshape(-1, 3)


def three_mf_file(
    triangles: Array, unit: str = "millimeter", transform: str | None = None, number: str = "{!r}"
) -> bytes:
    """A 3MF package holding one object, coordinates written in `unit` and formatted by `number`."""
    return package({"3D/3dmodel.model": three_mf_model(triangles, unit, transform, number).encode()})


def three_mf_model(
    triangles: Array, unit: str = "millimeter", transform: str | None = None, number: str = "{!r}"
) -> str:
    """The XML of a 3MF model part holding one object, placed once by the build."""
    vertices, faces = indexed(triangles)
    x, y, z = (f'{name}="{number}"' for name in "xyz")
    placement = "" if transform is None else f' transform="{transform}"'
    return "".join(
        [
            '<?xml version="1.0" encoding="UTF-8"?>\n',
            f'<model unit="{unit}" xml:lang="en-US" ',
            'xmlns="http://schemas.microsoft.com/3dmanufacturing/core/2015/02">',
            '<resources><object id="1" type="model"><mesh><vertices>',
            *(f"<vertex {x} {y} {z}/>".format(*v) for v in vertices.tolist()),
            "</vertices><triangles>",
            *(f'<triangle v1="{a}" v2="{b}" v3="{c}"/>' for a, b, c in faces.tolist()),
            f'</triangles></mesh></object></resources><build><item objectid="1"{placement}/></build></model>',
        ]
    )


def package(parts: dict[str, bytes]) -> bytes:
    """A 3MF zip with the usual content types and relationships around `parts`."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(
            "[Content_Types].xml",
            '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/'
            'package/2006/content-types"><Default Extension="model" '
            'ContentType="application/vnd.ms-package.3dmanufacturing-3dmodel+xml"/></Types>',
        )
        archive.writestr(
            "_rels/.rels",
            '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/'
            'package/2006/relationships"><Relationship Target="/3D/3dmodel.model" Id="rel0" '
            'Type="http://schemas.microsoft.com/3dmanufacturing/2013/01/3dmodel"/></Relationships>',
        )
        for name, data in parts.items():
            archive.writestr(name, data)
    return out.getvalue()


def textured_ply(triangles: Array) -> bytes:
    """An ASCII PLY whose header names a texture file that does not exist, with per-vertex UVs."""
    vertices, faces = indexed(triangles)
    header = [
        "ply",
        "format ascii 1.0",
        "comment TextureFile missing_texture.png",
        f"element vertex {len(vertices)}",
        "property float x",
        "property float y",
        "property float z",
        "property float s",
        "property float t",
        f"element face {len(faces)}",
        "property list uchar int vertex_indices",
        "end_header",
    ]
    rows = [f"{x!r} {y!r} {z!r} 0.5 0.5" for x, y, z in vertices.tolist()]
    rows += [f"3 {a} {b} {c}" for a, b, c in faces.tolist()]
    return ("\n".join(header + rows) + "\n").encode()


def exported(triangles: Array, file_type: str) -> bytes:
    """The triangles exported by trimesh as `file_type` (trimesh's own writers, not ours)."""
    vertices, faces = indexed(triangles)
    data = trimesh.Trimesh(vertices, faces, process=False).export(file_type=file_type)
    return data.encode() if isinstance(data, str) else bytes(data)
