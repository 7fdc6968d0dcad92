"""ASCII STL read in vectorised code: the same triangles as the binary file of the same model, whatever
the exporter's case, blanks, number layouts and solids; a malformed file is refused with the facet and the
word that broke it, never read as other triangles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import trimesh
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from pricing.meshes import ASCII_CHUNK, _ascii_stl, load_triangles
from pricing.rejections import Reason, Rejection
from tests.unit.pricing.solids import Array, binary_stl, box, torus


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
    assert isinstance(parsed, np.ndarray)
    np.testing.assert_array_equal(parsed, big.astype(np.float32))


def test_a_trimesh_export_reads_as_trimesh_reads_it() -> None:
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=5.0)
    data = trimesh.exchange.stl.export_stl_ascii(mesh).encode()
    parsed = _ascii_stl(data)
    assert isinstance(parsed, np.ndarray)
    np.testing.assert_allclose(parsed, mesh.vertices[mesh.faces], rtol=1e-6, atol=1e-6)


def refusal(data: bytes) -> str:
    """The detail of the refusal of `data` as STL, checking it is one."""
    result = load_triangles(data, "stl")
    assert isinstance(result, Rejection), result
    assert result.reason is Reason.UNREADABLE
    return result.detail


CUBE = ascii_stl(box(1, 1, 1))
ONE = b"1.000000000e+00"


def test_invalid_numbers_are_refused() -> None:
    assert "not-a-number" in refusal(CUBE.replace(ONE, b"nan", 1))
    assert "infinite" in refusal(CUBE.replace(ONE, b"-inf", 1))
    assert "'three' where a coordinate should be (facet 1)" in refusal(
        b"solid x\n facet normal 0 0 1\n outer loop\n vertex 1 2 three\n vertex 1 2 3\n vertex 1 2 3\n"
        b" endloop\n endfacet\nendsolid x\n"
    )
    assert "'1.0.0' where a coordinate should be" in refusal(CUBE.replace(ONE, b"1.0.0", 1))
    assert "'1,5' where a coordinate should be" in refusal(CUBE.replace(ONE, b"1,5", 1))


def test_a_torn_or_misshapen_facet_is_refused_with_where_and_why() -> None:
    lines = CUBE.split(b"\n")  # solid, then 7 lines a facet
    facet = lines[1:8]

    def joined(*middle: list[bytes]) -> bytes:
        return b"\n".join([lines[0], *(line for part in middle for line in part), *lines[8:]])

    assert "ends inside facet 12; the file may be truncated" in refusal(CUBE[:-200])
    four = [*facet[:5], facet[4], *facet[5:]]
    assert "'vertex' where 'endloop' should be (facet 1)" in refusal(joined(four))
    # four corners then two: as many numbers as two facets, which a count alone would not catch
    two = [*facet[:4], *facet[5:]]
    assert "(facet 1)" in refusal(joined(four, two))
    shifted = [*facet[:2], facet[2] + b" 4", facet[3].rsplit(b" ", 1)[0], *facet[4:]]
    assert "'4' where 'vertex' should be (facet 1)" in refusal(joined(shifted))
    short = [*facet[:2], facet[2].rsplit(b" ", 1)[0], *facet[3:]]
    assert "where a number should be" in refusal(joined(short))
    assert "'hello' where a number should be (facet 1)" in refusal(
        CUBE.replace(b"facet normal", b"facet normal hello", 1)
    )
    assert "'LOOPS' where 'loop' should be (facet 1)" in refusal(
        CUBE.replace(b"outer loop", b"outer LOOPS", 1)
    )
    assert "`endsolid` line after 'extra'" in refusal(CUBE.replace(b"endsolid", b"extra\nendsolid"))
    assert "`endsolid` line after 'endloop'" in refusal(CUBE.replace(b"endloop", b"endloop solid", 1))


def test_more_facets_than_the_limit_are_refused() -> None:
    from pricing.limits import Limits

    result = load_triangles(CUBE, "stl", Limits(max_triangles=5))
    assert isinstance(result, Rejection) and result.reason is Reason.TOO_MANY_TRIANGLES
    assert "12 triangles" in result.detail


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_an_empty_solid_holds_no_triangles(newline: str) -> None:
    result = load_triangles(f"solid empty{newline}endsolid empty{newline}".encode(), "stl")
    assert isinstance(result, Rejection) and "no triangles" in result.detail


def test_a_file_on_one_line_and_unnamed_solids_read() -> None:
    one_line = b" ".join(CUBE.split())
    assert one_line.startswith(b"solid part facet normal")
    parsed = _ascii_stl(one_line)
    assert isinstance(parsed, np.ndarray)
    np.testing.assert_array_equal(parsed, box(1, 1, 1).astype(np.float32))
    unnamed = ascii_stl(box(1, 1, 1), name="").replace(b"endsolid \n", b"endsolid\n")
    assert isinstance(_ascii_stl(unnamed), np.ndarray)


NUMBER_FORMATS = ["{:.9e}", "{:.8E}", "{:+.9g}", "{!r}", "{:.17g}", "{:.9}", "{:e}"]
"""Formats that give back the same float32 (all but "{:e}" hold its 9 significant digits; that one is
only used for the normals, which are not read)."""


@settings(max_examples=150, deadline=None)
@given(
    corners=arrays(
        np.float32,
        st.tuples(st.integers(1, 5), st.just(3), st.just(3)),
        elements=st.floats(width=32, allow_nan=False, allow_infinity=False),
    ),
    pieces=st.data(),
)
def test_any_spacing_case_and_number_layout_reads_as_the_binary_file(
    corners: npt.NDArray[np.float32], pieces: st.DataObject
) -> None:
    """ASCII STL written with random layouts, signs, exponents, blanks (tabs, CRLF, CR, runs of spaces)
    and keyword case gives the same triangles as the binary STL of the same floats."""
    blank = st.sampled_from([" ", "  ", "\t", " \t ", "\n", "\r\n", "\r", "\n\n  "])
    one_format = pieces.draw(st.sampled_from([None, *NUMBER_FORMATS[:-1]]))

    def number(value: float) -> str:
        style = one_format or pieces.draw(st.sampled_from(NUMBER_FORMATS[:-1]))
        return style.format(float(value))

    def word(text: str) -> str:
        return pieces.draw(st.sampled_from([text, text.upper(), text.title()]))

    name = pieces.draw(st.sampled_from(["", " part 7 v2.1", " solid-ish", " Facet_1e5"]))
    line_end = st.sampled_from(["\n", "\r\n", "\r", " "])  # a space: the whole file on one line
    words = [word("solid") + name + pieces.draw(line_end)]
    for triangle in corners:
        words += [word("facet"), word("normal"), *(NUMBER_FORMATS[-1].format(c) for c in (0.0, -0.5, 1e-7))]
        words += [word("outer"), word("loop")]
        for corner in triangle:
            words += [word("vertex"), *(number(c) for c in corner)]
        words += [word("endloop"), word("endfacet")]
    text = words[0] + "".join(w + pieces.draw(blank) for w in words[1:])
    text += word("endsolid") + name + pieces.draw(st.sampled_from(["", "\n", "\r\n"]))
    loaded = load_triangles(text.encode(), "stl")
    assert isinstance(loaded, np.ndarray), loaded
    binary = load_triangles(binary_stl(corners), "stl")
    assert isinstance(binary, np.ndarray)
    np.testing.assert_array_equal(loaded, binary)
    assert loaded.dtype == binary.dtype


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
    assert isinstance(parsed, np.ndarray)
    expected = np.array([float(t) for t in texts], np.float64).astype(np.float32) + np.float32(0.0)
    np.testing.assert_array_equal(parsed.reshape(-1), expected)


@pytest.mark.parametrize(
    "words",
    [
        [
            "1.",
            ".5",
            "+.5e+3",
            "-0",
            "1E5",
            "-1.5E-3",
            "007",
            "0.1234567890123456789",
            "12345678901234567890",
        ],
        ["1e-40", "3.4028234e38", "-1.17549435e-38", "1e+0010", "+1", "-.0", "5.e2", "123456789012.5", "0"],
    ],
)
def test_odd_but_plain_numbers_read_as_python_reads_them(words: list[str]) -> None:
    corners = "\n".join(f"vertex {' '.join(words[i : i + 3])}" for i in (0, 3, 6))
    text = f"solid t\nfacet normal 0 0 1\nouter loop\n{corners}\nendloop\nendfacet\nendsolid t\n"
    parsed = _ascii_stl(text.encode())
    assert isinstance(parsed, np.ndarray), parsed
    expected = np.array([float(w) for w in words], np.float64).astype(np.float32) + np.float32(0.0)
    np.testing.assert_array_equal(parsed.reshape(-1), expected)


@pytest.mark.parametrize(
    "word", ["1_0", "1.2.3", "1e", "e5", "--1", "1e5.0", "0x10", "1d5", ".", "-", "+e1", "1,5"]
)
def test_words_that_are_not_plain_numbers_are_refused(word: str) -> None:
    assert f"{word!r} where a coordinate should be (facet 1)" in refusal(
        f"solid t\nfacet normal 0 0 1\nouter loop\nvertex 1 2 3\nvertex 1 {word} 3\nvertex 1 2 3\n"
        "endloop\nendfacet\nendsolid t\n".encode()
    )


def test_pieces_are_cut_after_an_endfacet_in_any_case_and_text_without_one_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from pricing import meshes

    monkeypatch.setattr(meshes, "ASCII_CHUNK", 100)  # a piece ends inside most facets
    mixed = CUBE.replace(b"endfacet", b"EndFacet")
    path = tmp_path / "cube.stl"
    path.write_bytes(mixed)
    for source in (mixed, path):
        parsed = load_triangles(source, "stl")
        assert isinstance(parsed, np.ndarray)
        np.testing.assert_array_equal(parsed, box(1, 1, 1).astype(np.float32))
    monkeypatch.setattr(meshes, "ASCII_REACH", 1000)
    rambling = CUBE.replace(b"endsolid", b"x" * 5000 + b"\nendsolid")
    assert "no `endfacet` in the 1,000 bytes before byte" in refusal(rambling)
    too_many = load_triangles(path, "stl", meshes.Limits(max_triangles=5))
    assert isinstance(too_many, Rejection) and "12 triangles" in too_many.detail
