"""ASCII STL read in vectorised code: the same triangles as the binary file of the same model, whatever
the exporter's case, line ends and solids; what it cannot follow goes to trimesh or is refused."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from hypothesis import given, settings
from hypothesis import strategies as st

from pricing.meshes import ASCII_CHUNK, _ascii_stl, load_triangles
from pricing.rejections import Reason, Rejection
from tests.unit.pricing.solids import Array, box, torus


def ascii_stl(triangles: Array, name: str = "part", upper: bool = False, newline: str = "\n") -> bytes:
    """An ASCII STL as CAD tools write it: %e numbers, the normal first."""
    lines = [f"solid {name}"]
    for a, b, c in triangles.astype(np.float32).astype(np.float64):
        n = np.cross(b - a, c - a)
        lines += [
            f"  facet normal {n[0]:e} {n[1]:e} {n[2]:e}",
            "    outer loop",
            *(f"      vertex {p[0]:.9e} {p[1]:.9e} {p[2]:.9e}" for p in (a, b, c)),
            "    endloop",
            "  endfacet",
        ]
    lines.append(f"endsolid {name}")
    text = newline.join(lines) + newline
    return (text.upper() if upper else text).encode()


@settings(max_examples=25, deadline=None)
@given(
    upper=st.booleans(),
    crlf=st.booleans(),
    name=st.sampled_from(["", "part", "ring 42 v2.1", "solid-ish 1e5"]),
    around=st.integers(min_value=3, max_value=40),
)
def test_ascii_reads_the_same_triangles_as_binary(upper: bool, crlf: bool, name: str, around: int) -> None:
    triangles = torus(10.0, 2.5, around, 8)
    loaded = load_triangles(ascii_stl(triangles, name, upper, "\r\n" if crlf else "\n"), "stl")
    assert isinstance(loaded, np.ndarray)
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, triangles.astype(np.float32) + np.float32(0.0))


def test_several_solids_and_chunks_join_in_order() -> None:
    first, second = box(1, 2, 3), box(4, 5, 6) + 10.0
    data = ascii_stl(first, "a") + ascii_stl(second, "b")
    loaded = load_triangles(data, "stl")
    assert isinstance(loaded, np.ndarray)
    np.testing.assert_array_equal(loaded, np.concatenate([first, second]).astype(np.float32))
    big = torus(10.0, 2.5, 400, 100)  # over one chunk of text
    text = ascii_stl(big)
    assert len(text) > ASCII_CHUNK
    parsed = _ascii_stl(text)
    assert parsed is not None
    np.testing.assert_array_equal(parsed, big.astype(np.float32))


def test_a_trimesh_export_reads_as_trimesh_reads_it() -> None:
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=5.0)
    data = trimesh.exchange.stl.export_stl_ascii(mesh).encode()
    parsed = _ascii_stl(data)
    assert parsed is not None
    np.testing.assert_allclose(parsed, mesh.vertices[mesh.faces], rtol=1e-6, atol=1e-6)


def test_invalid_numbers_are_refused_and_odd_text_is_not_read_as_numbers() -> None:
    bad = ascii_stl(box(1, 1, 1)).replace(b"1.000000000e+00", b"nan", 1)
    refused = load_triangles(bad, "stl")
    assert isinstance(refused, Rejection) and "not-a-number" in refused.detail
    torn = ascii_stl(box(1, 1, 1))[:-200]  # cut inside a facet
    assert _ascii_stl(torn) is None
    garbage = b"solid x\n facet normal 0 0 1\n outer loop\n vertex 1 2 three\n"
    assert _ascii_stl(garbage) is None
    result = load_triangles(garbage, "stl")
    assert isinstance(result, Rejection) and result.reason is Reason.UNREADABLE


def test_counts_facets_before_parsing_against_the_limit() -> None:
    from pricing.limits import Limits

    result = load_triangles(ascii_stl(box(1, 1, 1)), "stl", Limits(max_triangles=5))
    assert isinstance(result, Rejection) and result.reason is Reason.TOO_MANY_TRIANGLES


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_an_empty_solid_holds_no_triangles(newline: str) -> None:
    result = load_triangles(f"solid empty{newline}endsolid empty{newline}".encode(), "stl")
    assert isinstance(result, Rejection) and "no triangles" in result.detail


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(
        st.floats(min_value=-1e6, max_value=1e6, allow_nan=False).filter(lambda v: v == 0 or abs(v) > 1e-30),
        min_size=9,
        max_size=90,
    ).filter(lambda v: len(v) % 9 == 0),
    style=st.sampled_from(["{:e}", "{:.9e}", "{:.6f}", "{:g}", "{!r}", "{:+.3E}", "{:.17g}"]),
)
def test_numbers_read_as_python_reads_them(values: list[float], style: str) -> None:
    """Every number of every common layout gives the float32 that Python's own parser gives."""
    texts = [style.format(v).lower() for v in values]
    lines = ["solid t"]
    for i in range(0, len(texts), 9):
        corners = [" ".join(texts[i + j : i + j + 3]) for j in (0, 3, 6)]
        lines += [
            "facet normal 0 0 1",
            "outer loop",
            *(f"vertex {c}" for c in corners),
            "endloop",
            "endfacet",
        ]
    parsed = _ascii_stl(("\n".join([*lines, "endsolid t"]) + "\n").encode())
    assert parsed is not None
    expected = np.array([float(t) for t in texts], np.float64).astype(np.float32) + np.float32(0.0)
    np.testing.assert_array_equal(parsed.reshape(-1), expected)
