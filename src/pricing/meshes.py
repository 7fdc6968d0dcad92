"""Reading model files into one array of triangles, shape (N, 3, 3), in millimetres.

Binary STL, the format of nearly every large upload, is read with numpy alone, and so are ASCII STL
(parsed over its bytes, a chunk at a time) and plain 3MF meshes (three_mf.py). The other formats go
through trimesh with `process=False` (no vertex merging: geometry.py does that faster). Units: STL, OBJ
and PLY carry none and are millimetres; 3MF declares one on its `<model>`; glTF is metres by definition.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator, Sequence
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
        if isinstance(source, bytes):
            return _ascii_stl(source, limits)
        with source.open("rb") as file:
            return _ascii_stl(iter(lambda: file.read(ASCII_CHUNK), b""), limits)
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


ASCII_CHUNK = 1 << 20
"""Bytes of ASCII STL read and parsed at a time (cut after its last `endfacet`): parsing holds ~15
chunks' worth of arrays besides the triangles, whatever the file's size. Measured for a million
triangles: 1 MB chunks took 0.83 s and 4 MB 0.93 s, 16 MB 1.25 s (cache misses), and at 100k triangles
the peak rose by 12 MB against 35 MB with 4 MB chunks."""
ASCII_REACH = 1 << 16
"""Bytes that may go by without an `endfacet` (a facet takes a few hundred) before the text is refused
as no list of facets, rather than parsed as one ever larger chunk."""
_FACET: tuple[bytes | None, ...] = (
    b"facet",
    b"normal",
    *(None,) * 3,
    b"outer",
    b"loop",
    *(b"vertex", None, None, None) * 3,
    b"endloop",
    b"endfacet",
)
"""A facet's 21 words; None stands for a number."""
_WORD_SLOTS = [i for i, word in enumerate(_FACET) if word is not None]
_NORMAL_SLOTS = [2, 3, 4]
_CORNER_SLOTS = [i for i in range(8, 19) if _FACET[i] is None]
_WORDS = np.array([int.from_bytes(word.ljust(8, b"\0"), "little") for word in _FACET if word], np.uint64)
_WORD_LENGTHS = np.array([len(word) for word in _FACET if word is not None])
_SPELT = np.array([(1 << 8 * min(n, 8)) - 1 for n in _WORD_LENGTHS], np.uint64)
"""The keywords' first eight bytes as little-endian integers, and masks of the bytes they spell."""
_FACET_START = re.compile(rb"facet\s+normal", re.IGNORECASE)
_MARGIN = 64
"""Zero bytes around a chunk's text, so a fixed-width window at either end stays inside the array."""
_WIDEST = 40
"""Longest number the vectorised layouts take (what is longer goes to Python's parser)."""
_POW10 = 10.0 ** np.arange(23)
_TENS = 10 ** np.arange(19, dtype=np.int64)
"""Powers of ten that float64 holds exactly: a mantissa times or over one of them rounds once."""
_ZERO, _NINE, _DOT, _E, _PLUS, _MINUS = (ord(c) for c in "09.e+-")
_DIGIT, _DOT_KIND, _E_KIND, _SIGN_KIND, _OTHER = range(5)
_KINDS = np.full(256, _OTHER, np.uint8)
_KINDS[_ZERO : _NINE + 1] = _DIGIT
_KINDS[[_DOT, _E, _MINUS, _PLUS]] = [_DOT_KIND, _E_KIND, _SIGN_KIND, _SIGN_KIND]
"""The kind of each byte of a number, looked up in one step."""
_NUMBER_START = np.zeros(256, bool)
_NUMBER_START[list(b"0123456789.+-ni")] = True
"""Bytes a number can start with (n and i for nan and inf, which exporters write for a degenerate
facet's normal)."""


def _ascii_stl(source: bytes | Iterator[bytes], limits: Limits = DEFAULT_LIMITS) -> Triangles | Rejection:
    """ASCII STL in vectorised code, from its bytes or blocks of them, a chunk at a time: the words of
    each facet are found and checked with numpy over the bytes and its nine corner numbers parsed by
    column arithmetic; normals are skipped. A file that is not `facet normal`, three numbers,
    `outer loop`, three `vertex` lines of three numbers, `endloop`, `endfacet` (in any case and spacing,
    between `solid` and `endsolid` lines) is refused with the facet and the word that broke it.

    A file is read a chunk at a time, never whole: at a million triangles (254 MB) the quote's peak
    was 196 MB (0.8x the file), against 327 MB (1.3x) when the text was read first.

    This takes ~0.8 s CPU for a million triangles of `%e` numbers. Removing the keywords with
    bytes.replace and parsing the rest with np.fromstring(sep=" ") took 3.9 s (1.45 s the five
    replaces, 2.4 s the parse), np.loadtxt 2.5 s for the parse alone, and checked no facet's shape.
    """
    _raise_malloc_thresholds()
    parts: list[Triangles] = []
    facets = 0
    at = 0  # bytes of the file before `pending`
    pending = b""
    pieces = _chunks(iter([source]) if isinstance(source, bytes) else source)
    for piece in pieces:
        text = pending + piece if pending else piece
        # the last `endfacet` (in any case) ends what is parsed now; the rest waits for the next piece
        last = text[-ASCII_REACH:].lower().rfind(b"endfacet")
        if last < 0 and len(text) >= ASCII_REACH:
            return _unreadable(
                f"the ASCII STL has no `endfacet` in the {ASCII_REACH:,} bytes before byte "
                f"{at + len(text):,}: it is not a list of facets"
            )
        cut = last + max(0, len(text) - ASCII_REACH) + len(b"endfacet") if last >= 0 else 0
        cut = cut if piece else len(text)  # the end: what is left is parsed (or refused) as it is
        pending = text[cut:]
        if cut == 0:
            continue
        corners = _corners(text[:cut], facets)
        at += cut
        if isinstance(corners, Rejection):
            return corners
        facets += len(corners)
        if facets > limits.max_triangles:
            rest = sum(p.lower().count(b"endfacet") for p in (pending, *pieces))
            return _too_many(facets + rest, limits)
        parts.append(corners)
    if not parts:
        return np.zeros((0, 3, 3), np.float32)
    triangles = np.concatenate(parts) if len(parts) != 1 else parts[0]
    triangles += 0.0  # -0.0 and 0.0 are one corner, as in binary STL
    return triangles


def _raise_malloc_thresholds() -> None:
    """Free one untouched 16 MB block, so that glibc's malloc keeps the chunks' arrays in its heap.

    glibc gives freed memory back to the system once more than its trim threshold is free, and that
    threshold starts at 256 KB and only rises with the largest mmapped block freed so far: each chunk's
    ~15 MB of arrays was faulted in anew, 1.4 s of a cold 1M-triangle quote's 3.7 s CPU (2.3 s with this;
    the peak fell from 213 to 192 MB). Freeing the block raises the threshold once for the process; it
    costs no memory (its pages are never touched) and changes nothing on other allocators.
    """
    block = np.empty(16 << 20, np.uint8)
    del block


def _chunks(blocks: Iterator[bytes]) -> Iterator[bytes]:
    """`blocks` cut into ASCII_CHUNK pieces, then one empty piece to say the text has ended."""
    for block in blocks:
        for start in range(0, len(block), ASCII_CHUNK):
            yield block[start : start + ASCII_CHUNK]
    yield b""


def _corners(text: bytes, before: int) -> Triangles | Rejection:
    """The corners of the facets in `text` (whole facets and solid lines), or why it is not that;
    `before` counts the facets of the earlier chunks, for the message."""
    chars = np.empty(len(text) + 2 * _MARGIN, np.uint8)
    chars[:_MARGIN] = chars[-_MARGIN:] = 0
    chars[_MARGIN:-_MARGIN] = np.frombuffer(text, np.uint8)
    blank = chars <= 32  # space, tab, CR, LF (and the margins)
    # Lower case in one pass: OR 0x20 maps A-Z onto a-z and no other byte above 32 onto a letter, digit,
    # dot or sign (bytes.lower() and its copy took 7x as long). Blanks turn into other bytes, but only the
    # blank mask says where words are.
    chars |= 0x20
    solids = _solid_lines(text, chars, blank)
    if isinstance(solids, Rejection):
        return solids
    # the words are the runs of non-blank bytes: they start and end where blank flips
    flips = np.flatnonzero(blank[1:] != blank[:-1]) + 1
    del blank
    count = len(flips) // (2 * len(_FACET))
    starts, ends = flips[0::2], flips[1::2]
    whole = count * len(_FACET)
    fits = _facets_fit(
        chars, starts[:whole].reshape(count, len(_FACET)), ends[:whole].reshape(count, len(_FACET))
    )
    if whole != len(starts) or not fits.all():
        bad = int(np.argmin(fits)) if not fits.all() else count
        return _misshapen(text, chars, starts, ends, bad, before)
    starts = starts.reshape(count, len(_FACET))[:, _CORNER_SLOTS].reshape(-1)
    ends = ends.reshape(count, len(_FACET))[:, _CORNER_SLOTS].reshape(-1)
    values = _decimals(chars, starts, ends)
    if isinstance(values, int):
        word = text[starts[values] - _MARGIN : ends[values] - _MARGIN].decode(errors="replace")[:40]
        facet = before + values // 9 + 1
        return _unreadable(f"the ASCII STL has {word!r} where a coordinate should be (facet {facet:,})")
    return values.reshape(count, 3, 3).astype(np.float32)


def _solid_lines(text: bytes, chars: npt.NDArray[np.uint8], blank: npt.NDArray[np.bool_]) -> Rejection | None:
    """Blank out the `solid name` and `endsolid name` lines in `blank`: a name may hold any word. Each
    `s` of `chars` (lower case) is looked at: no other keyword, nor a number, has one."""
    covered = 0
    for at in np.flatnonzero(chars == ord("s")).tolist():
        keyword = at if blank[at - 1] else at - 3  # solid or endsolid
        if at < covered or chars[keyword:at].tobytes() not in (b"", b"end"):
            continue  # a name's, or a stray word that the facets' check refuses
        if chars[at : at + 5].tobytes() != b"solid" or not blank[keyword - 1]:
            continue
        before = keyword - 1
        while before >= _MARGIN and blank[before] and before >= covered:
            before -= 1
        if before >= max(covered, _MARGIN) and chars[before - 7 : before + 1].tobytes() != b"endfacet":
            first = before
            while not blank[first - 1]:
                first -= 1
            word = text[max(first, before - 39) - _MARGIN : before + 1 - _MARGIN].decode(errors="replace")
            return _unreadable(
                f"the ASCII STL has a `solid` or `endsolid` line after {word!r}, not after an `endfacet`"
            )
        ends = [i for i in (text.find(b"\n", at - _MARGIN), text.find(b"\r", at - _MARGIN)) if i >= 0]
        stop = min(ends, default=len(text)) + _MARGIN
        # a file on one line: the name ends at the first facet (the raw text: the fold changed blanks)
        one_line = _FACET_START.search(text, at - _MARGIN, stop - _MARGIN + 16)
        if one_line and one_line.start() + _MARGIN < stop:
            stop = one_line.start() + _MARGIN
        blank[keyword:stop] = True
        covered = stop
    return None


def _facets_fit(
    chars: npt.NDArray[np.uint8], starts: npt.NDArray[np.intp], ends: npt.NDArray[np.intp]
) -> npt.NDArray[np.bool_]:
    """For each row of 21 words, whether it is a facet: the keywords spelt out where they belong and
    the normal's three words starting like numbers (the corners' are checked as they are parsed)."""
    words = starts[:, _WORD_SLOTS]
    # the eight bytes at each keyword as one integer, read from an unaligned view of the text: 10x
    # faster than comparing (words, 8) bytes
    eights = np.ndarray((len(chars) - 7,), "<u8", chars, 0, (1,))[words]
    fits = (eights & _SPELT == _WORDS).all(axis=1)
    fits &= (ends[:, _WORD_SLOTS] - words == _WORD_LENGTHS).all(axis=1)
    fits &= _NUMBER_START[chars[starts[:, _NORMAL_SLOTS]]].all(axis=1)
    return np.asarray(fits)


def _misshapen(
    text: bytes,
    chars: npt.NDArray[np.uint8],
    starts: npt.NDArray[np.intp],
    ends: npt.NDArray[np.intp],
    bad: int,
    before: int,
) -> Rejection:
    """Why facet `bad` is not a facet: the first word out of place, or the end of the file."""
    facet = before + bad + 1
    for slot, expected in enumerate(_FACET):
        k = bad * len(_FACET) + slot
        if k >= len(starts):
            return _unreadable(f"the ASCII STL ends inside facet {facet:,}; the file may be truncated")
        word = chars[starts[k] : ends[k]].tobytes()
        if not (bool(_NUMBER_START[word[0]]) if expected is None else word == expected):
            wanted = "a number" if expected is None else repr(expected.decode())
            shown = text[starts[k] - _MARGIN : ends[k] - _MARGIN].decode(errors="replace")[:40]
            return _unreadable(
                f"the ASCII STL has {shown!r} where {wanted} should be "
                f"(facet {facet:,}); a facet is `facet normal` and three numbers, `outer loop`, three "
                "`vertex` lines of three numbers each, `endloop` and `endfacet`"
            )
    return _unreadable(f"the ASCII STL has unexpected text in facet {facet:,}")


def _decimals(
    chars: npt.NDArray[np.uint8], starts: npt.NDArray[np.intp], ends: npt.NDArray[np.intp]
) -> npt.NDArray[np.float64] | int:
    """Each word chars[start:end] as a number, or the index of a word that is not one."""
    if len(starts) == 0:
        return np.zeros(0)
    lengths = ends - starts
    shortest, longest = int(lengths.min()), int(lengths.max())
    if longest - shortest <= 1 and longest <= _WIDEST:
        values = _one_layout(chars, ends, lengths, shortest, longest)
        if values is not None:
            return values
    return _any_layout(chars, starts, ends)


def _one_layout(
    chars: npt.NDArray[np.uint8],
    ends: npt.NDArray[np.intp],
    lengths: npt.NDArray[np.intp],
    shortest: int,
    longest: int,
) -> npt.NDArray[np.float64] | None:
    """The words as numbers if all share one layout but for a leading sign, as printf's %e gives (and
    %.Nf for numbers of one magnitude); None if they do not.

    Aligned at their ends, every digit of such words stands in one column, so parsing is a few
    operations per column over all words at once (a million triangles' corners in ~0.3 s).
    """
    window = np.lib.stride_tricks.sliding_window_view(chars, longest)[ends - longest]
    head = longest - shortest  # the column of the optional sign, if lengths differ
    pattern = _KINDS[window[0, head:]]
    signed = int(pattern[0] == _SIGN_KIND)
    shape = _shape(pattern[signed:])
    if shape is None or (head and signed):
        return None
    for column in range(head, longest):
        kind, values = pattern[column - head], window[:, column]
        if kind == _DIGIT:
            fits = values - _ZERO <= 9  # uint8 arithmetic wraps the bytes below '0' past 9
        elif kind == _SIGN_KIND:
            fits = (values == _PLUS) | (values == _MINUS)
        else:
            fits = values == window[0, column]
        if not fits.all():
            return None
    if head:  # the longer words start with a sign; the shorter ones have a blank there
        sign = window[:, 0]
        if not ((lengths == shortest) | (sign == _PLUS) | (sign == _MINUS)).all():
            return None
    # the byte before a shorter word is a blank, which the case fold may have turned into a '-' (CR)
    negative = (window[:, 0] == _MINUS) & (lengths == longest) if head or signed else None
    return _scaled(window[:, head + signed :], shape, negative)


def _any_layout(
    chars: npt.NDArray[np.uint8], starts: npt.NDArray[np.intp], ends: npt.NDArray[np.intp]
) -> npt.NDArray[np.float64] | int:
    """Words of any decimal layouts as numbers ([+-]digits[.digits][e[+-]digits], as %g or a shortest
    repr gives), or the index of one that is not a number. Each word's dot and e are found by a search
    among the chunk's dots and e's, and the words are aligned at their dots: then every column is one
    digit place, and the integer and fraction parts are a multiply-add per column over all words. What
    is not a plain decimal of up to 18 digits (nan, inf, 1_0) goes to Python's own parser, and what
    that refuses is the answer.

    Grouping the words by layout and parsing each group by column instead took 4.6 s for a million
    triangles in repr's layouts (27 layouts a chunk, each a sort and gathers).
    """
    signed = (chars[starts] == _MINUS) | (chars[starts] == _PLUS)
    first = starts + signed
    e = _first(chars == _E, first, ends)
    point = _first(chars == _DOT, first, e)  # where the integer part ends: the dot, else the e or end
    integer_digits, fraction_digits = point - first, np.maximum(e - point - 1, 0)
    plain = (integer_digits + fraction_digits >= 1) & (integer_digits + fraction_digits <= 18)
    # Aligned at the dot (column `wide`), every column is one digit place; bytes outside the word's
    # mantissa count as 0. A plain word has at most 18 digits on either side, so no wider view is read
    # (and the margin keeps the view inside the array).
    wide, deep = min(int(integer_digits.max()), 18), min(int(fraction_digits.max()), 18)
    columns = np.arange(-wide, deep + 1, dtype=np.int8)  # int8 bounds: an eighth of int64's traffic
    window = np.lib.stride_tricks.sliding_window_view(chars, wide + deep + 1)[point - wide]
    below = np.maximum(first - point, -wide).astype(np.int8)[:, None]
    above = np.minimum(e - point, deep + 1).astype(np.int8)[:, None]
    inside = (columns >= below) & (columns < above) & (columns != 0)
    digits = window - _ZERO  # uint8: bytes below '0' wrap past 9
    plain &= _rows_without(inside & (digits > 9))
    digits *= inside
    integer = _integer(digits, range(wide), zero=0)
    fraction = _integer(digits, range(wide + 1, wide + 1 + deep), zero=0)
    # each word's own mantissa: its integer part, then its fraction's digits (the alignment padded them
    # with zeros to `deep`, which an exact division takes off)
    fraction //= _TENS[deep - np.minimum(fraction_digits, deep)]
    mantissa = integer * _TENS[np.minimum(fraction_digits, 18)] + fraction
    power = np.zeros(len(starts), np.int64)
    has_e = np.flatnonzero(e < ends)  # few, in these layouts: only those are read
    if len(has_e):
        power[has_e], fits = _exponents(chars, e[has_e], ends[has_e])
        plain[has_e] &= fits
    values = _times_ten_to(mantissa, power - fraction_digits)
    np.negative(values, out=values, where=chars[starts] == _MINUS)
    bad: list[int] = []
    for row in np.flatnonzero(~plain).tolist():
        try:  # the folded word: '_' became DEL, so Python's 1_000 is refused too
            values[row] = float(chars[starts[row] : ends[row]].tobytes())
        except ValueError:
            bad.append(row)
    return min(bad) if bad else values


def _first(
    found: npt.NDArray[np.bool_], starts: npt.NDArray[np.intp], ends: npt.NDArray[np.intp]
) -> npt.NDArray[np.intp]:
    """For each word, where `found` is first true in [start, end), else its end."""
    at = np.flatnonzero(found)
    at = np.append(at, len(found))
    return np.minimum(at[np.searchsorted(at, starts)], ends)


def _exponents(
    chars: npt.NDArray[np.uint8], e: npt.NDArray[np.intp], ends: npt.NDArray[np.intp]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """The exponent after each word's e, and whether it is [+-] and 1 to 4 digits."""
    sign = chars[e + 1]
    signed = (sign == _MINUS) | (sign == _PLUS)
    first = e + 1 + signed
    fits = (ends - first >= 1) & (ends - first <= 4)
    window = np.lib.stride_tricks.sliding_window_view(chars, 4)[ends - 4]
    inside = ends[:, None] - 4 + np.arange(4) >= first[:, None]
    digits = window - _ZERO
    fits &= _rows_without(inside & (digits > 9))
    digits *= inside
    power = _integer(digits, range(4), zero=0)
    np.negative(power, out=power, where=sign == _MINUS)
    return power, np.asarray(fits)


def _rows_without(flags: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """Whether each row has no flag set: one reduction over the whole first, since a reduction along
    short rows costs ~30x as much per byte and files almost never have a flag."""
    if not flags.any():
        return np.ones(len(flags), bool)
    return np.asarray(~flags.any(axis=1))


def _shape(kinds: npt.NDArray[np.uint8]) -> tuple[list[int], int, int | None, list[int]] | None:
    """Where an unsigned number's mantissa digits stand, how many follow the dot, and where its
    exponent's sign and digits stand; None unless it is digits[.digits][e[+-]digits] with 1 to 18
    mantissa digits (what int64 holds) and 1 to 4 exponent digits."""
    kinds_ = [int(k) for k in kinds]
    e = kinds_.index(_E_KIND) if _E_KIND in kinds_ else len(kinds_)
    mantissa = kinds_[:e]
    if mantissa.count(_DOT_KIND) > 1 or any(k not in (_DIGIT, _DOT_KIND) for k in mantissa):
        return None
    digits = [i for i, k in enumerate(mantissa) if k == _DIGIT]
    if not 1 <= len(digits) <= 18:
        return None
    dot = mantissa.index(_DOT_KIND) if _DOT_KIND in mantissa else e
    fraction = sum(1 for i in digits if i > dot)
    sign, exponent = None, []
    if e < len(kinds_):
        sign = e + 1 if kinds_[e + 1 : e + 2] == [_SIGN_KIND] else None
        exponent = list(range(e + 1 + (sign is not None), len(kinds_)))
        if not 1 <= len(exponent) <= 4 or any(kinds_[i] != _DIGIT for i in exponent):
            return None
    return digits, fraction, sign, exponent


def _scaled(
    window: npt.NDArray[np.uint8],
    shape: tuple[list[int], int, int | None, list[int]],
    negative: npt.NDArray[np.bool_] | None,
) -> npt.NDArray[np.float64]:
    """The numbers whose columns `shape` locates in `window`: the mantissa read as an integer and scaled
    by one exact power of ten, so a number rounds once (to the nearest float64, for mantissas of up to
    15 digits and exponents within 22, which covers what exporters write)."""
    digits, fraction, sign, exponent = shape
    mantissa = _integer(window, digits)
    power = _integer(window, exponent) if exponent else np.zeros(len(window), np.int64)
    if sign is not None:
        np.negative(power, out=power, where=window[:, sign] == _MINUS)
    value = _times_ten_to(mantissa, power - fraction)
    if negative is not None:
        np.negative(value, out=value, where=negative)
    return value


def _times_ten_to(mantissa: npt.NDArray[np.int64], scale: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """mantissa * 10**scale, rounded once (to the nearest float64) for mantissas of up to 15 digits and
    scales within 22 (one exact power of ten), which covers what exporters write."""
    value = mantissa.astype(np.float64)
    exact = _POW10[np.minimum(np.abs(scale), 22)]
    value = np.where(scale >= 0, value * exact, value / exact)
    far = np.abs(scale) > 22
    if far.any():  # beyond one exact power of ten: rare in STL; scale in two steps
        with np.errstate(over="ignore"):  # 1e400 is inf, as Python reads it, and refused as such
            value[far] = mantissa[far] * np.power(10.0, scale[far].astype(np.float64))
    return value


def _integer(
    window: npt.NDArray[np.uint8], columns: Sequence[int], zero: int = _ZERO
) -> npt.NDArray[np.int64]:
    """The integer that the digits in `columns` of each row of `window` spell (bytes, or digit values
    with `zero` 0)."""
    value = np.zeros(len(window), np.int64)
    for column in columns:
        value *= 10
        value += window[:, column]
    # the ASCII '0' of every digit, taken off at once (18 digits of at most '9' stay below 2**63)
    value -= zero * sum(10**i for i in range(len(columns)))
    return value


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
