"""Crafted model files: each is refused at the door with a clear 4xx, or accepted and then rejected by
pricing with a reason the customer can read; never a 500, and a refused upload stores nothing.

tests/e2e/test_bad_input.py already covers the plain cases (over the upload size by Content-Length and
chunked, unknown and unnamed formats, an STL short by a few bytes, an empty body, a zip that is not a 3MF,
one 3MF part that declares too much). Here: zip bombs (honest, lying, huge, many entries), STL whose
header and body disagree, ASCII STL cut mid-facet, other formats cut short, hostile filenames, and models
over MAX_TRIANGLES, on a `backbone up` whose pricing has a small triangle limit.
"""

from __future__ import annotations

import io
import struct
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from backbone.migrate import migrate
from orders_core.lifecycle import Role
from tests.conftest import PostgresServer, RunningApi
from tests.journeys import NEW_ORDER, answered
from tests.meshes import ascii_stl, binary_stl, cube_stl, cube_triangles
from tests.security.servers import LIMITS, backbone, position

MAX_TRIANGLES = 100
MAX_UNZIPPED = int(LIMITS["MAX_UNZIPPED_BYTES"])
MAX_UPLOAD = int(LIMITS["MAX_UPLOAD_BYTES"])
MODEL_PART = "3D/3dmodel.model"


@pytest.fixture(scope="module")
def server(postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApi]:
    """`backbone up` whose pricing accepts at most MAX_TRIANGLES triangles."""
    url = postgres.create_database("uploads")
    migrate(url)
    with backbone("up", url, tmp_path_factory.mktemp("home"), MAX_TRIANGLES=str(MAX_TRIANGLES)) as up:
        yield up


@pytest.fixture(scope="module")
def customer(server: RunningApi) -> Iterator[httpx.Client]:
    with server.client(Role.CUSTOMER, "uploader") as client:
        yield client


def new_order(customer: httpx.Client) -> str:
    created = customer.post("/orders", json=NEW_ORDER)
    assert created.status_code == 201, created.text
    order_id: str = created.json()["order_id"]
    return order_id


def stored_files(home: Path) -> list[Path]:
    return sorted(p for p in (home / "blobs").rglob("*") if p.is_file())


def upload(
    customer: httpx.Client, order_id: str, content: bytes, content_type: str, **params: str
) -> httpx.Response:
    return customer.put(
        f"/orders/{order_id}/model", content=content, headers={"Content-Type": content_type}, params=params
    )


def refused(
    server: RunningApi, customer: httpx.Client, content: bytes, content_type: str, status: int
) -> str:
    """Uploads `content` to a new order: `status` with a reason, fast, nothing stored, nothing recorded."""
    order_id = new_order(customer)
    files, before = stored_files(server.home), position(server)
    started = time.monotonic()
    response = upload(customer, order_id, content, content_type)
    took = time.monotonic() - started
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] and body["detail"], body
    # A bomb is refused from its directory: unpacking it would take far longer than this.
    assert took < 2.0, f"{took:.1f} s"
    assert stored_files(server.home) == files
    assert position(server) == before
    assert customer.get(f"/orders/{order_id}").json()["status"] == "INITIATED"
    detail: str = body["detail"]
    return detail


def rejected_by_pricing(customer: httpx.Client, content: bytes, content_type: str) -> str:
    """Uploads and submits `content`: the upload is accepted, pricing rejects the model; its reason."""
    order_id = new_order(customer)
    uploaded = upload(customer, order_id, content, content_type)
    assert uploaded.status_code == 200, uploaded.text
    submitted = customer.post(f"/orders/{order_id}/submit")
    assert submitted.status_code == 200, submitted.text
    order = answered(customer, order_id)
    assert order["status"] == "REJECTED", order
    reason: str = order["rejection_reason"]
    assert reason and len(reason) < 500, reason
    return reason


def model_xml(triangles: np.ndarray) -> bytes:
    """A plain 3MF model part holding `triangles`."""
    corners = triangles.reshape(-1, 3)
    vertices = "".join(f'<vertex x="{x}" y="{y}" z="{z}"/>' for x, y, z in corners)
    faces = "".join(
        f'<triangle v1="{3 * i}" v2="{3 * i + 1}" v3="{3 * i + 2}"/>' for i in range(len(triangles))
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<model unit="millimeter" xmlns="http://schemas.microsoft.com/3dmanufacturing/core/2015/02">'
        f'<resources><object id="1" type="model"><mesh><vertices>{vertices}</vertices>'
        f"<triangles>{faces}</triangles></mesh></object></resources>"
        '<build><item objectid="1"/></build></model>'
    ).encode()


def three_mf(parts: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in parts.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def declaring(archive: bytes, size: int) -> bytes:
    """`archive` with its first entry's uncompressed size set to `size` in both of the zip's headers."""
    data = bytearray(archive)
    local, central = data.find(b"PK\x03\x04"), data.find(b"PK\x01\x02")
    struct.pack_into("<I", data, local + 22, size)
    struct.pack_into("<I", data, central + 24, size)
    return bytes(data)


class TestZipBombs:
    def test_a_classic_bomb_is_refused_from_its_directory(
        self, server: RunningApi, customer: httpx.Client
    ) -> None:
        buffer = io.BytesIO()
        with (
            zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive,
            archive.open(MODEL_PART, "w", force_zip64=True) as part,
        ):
            zeros = bytes(1 << 20)
            for _ in range(256):
                part.write(zeros)
        bomb = buffer.getvalue()
        assert len(bomb) * 500 < 256 << 20  # a real bomb: over 500 times larger unpacked
        assert "unpack" in refused(server, customer, bomb, "model/3mf", 413)

    def test_a_part_declaring_four_gigabytes_is_refused(
        self, server: RunningApi, customer: httpx.Client
    ) -> None:
        huge = declaring(three_mf({MODEL_PART: model_xml(cube_triangles())}), 0xFFFFFFFF)
        assert str(0xFFFFFFFF) in refused(server, customer, huge, "model/3mf", 413)

    def test_many_small_entries_add_up(self, server: RunningApi, customer: httpx.Client) -> None:
        parts = {MODEL_PART: model_xml(cube_triangles())}
        parts |= {f"3D/part{i}.model": b"x" * 1024 for i in range(MAX_UNZIPPED // 1024 + 1)}
        archive = three_mf(parts)
        assert len(archive) < MAX_UPLOAD
        refused(server, customer, archive, "model/3mf", 413)

    def test_a_bomb_that_understates_its_size_is_rejected_by_pricing(self, customer: httpx.Client) -> None:
        # Headers that claim 1000 bytes pass the door, which only reads the directory; pricing counts
        # what it actually inflates and stops at the claimed size, where the checksum cannot match.
        inner = model_xml(cube_triangles()) + b" " * (2 * MAX_UNZIPPED)
        lying = declaring(three_mf({MODEL_PART: inner}), 1000)
        assert len(lying) < MAX_UPLOAD
        assert "3MF" in rejected_by_pricing(customer, lying, "model/3mf")

    def test_a_3mf_cut_short_is_refused(self, server: RunningApi, customer: httpx.Client) -> None:
        whole = three_mf({MODEL_PART: model_xml(cube_triangles())})
        refused(server, customer, whole[: len(whole) // 2], "model/3mf", 422)


class TestTruncatedAndInconsistent:
    @pytest.mark.parametrize(
        "claimed",
        [10**9, 13, 11, 0, 0xFFFFFFFF],
        ids=["a billion", "one more", "one fewer", "none", "the most a header holds"],
    )
    def test_a_binary_stl_whose_header_disagrees_with_its_size_is_422(
        self, server: RunningApi, customer: httpx.Client, claimed: int
    ) -> None:
        stl = bytearray(cube_stl())  # 12 triangles
        struct.pack_into("<I", stl, 80, claimed)
        assert "truncated" in refused(server, customer, bytes(stl), "model/stl", 422)

    def test_a_binary_stl_cut_at_a_record_boundary_is_422(
        self, server: RunningApi, customer: httpx.Client
    ) -> None:
        stl = cube_stl()[: 84 + 50 * 10]  # the header still says 12
        refused(server, customer, stl, "model/stl", 422)

    @pytest.mark.parametrize("cut", ["mid facet", "mid number", "after solid"])
    def test_an_ascii_stl_cut_short_is_rejected_with_a_reason(self, customer: httpx.Client, cut: str) -> None:
        text = ascii_stl(cube_triangles())
        at = {
            "mid facet": text.index(b"outer loop", len(text) // 2),
            "mid number": text.index(b"vertex", len(text) // 2) + 12,
            "after solid": len(b"solid test\n  facet"),
        }[cut]
        rejected_by_pricing(customer, text[:at], "model/stl")

    @pytest.mark.parametrize(
        ("content", "content_type"),
        [
            (b"glTF" + struct.pack("<II", 2, 10_000) + b"\0" * 100, "model/gltf-binary"),
            (b"glTF" + struct.pack("<II", 1, 112) + b"\0" * 100, "model/gltf-binary"),
            (b"glTF\x02\0", "model/gltf-binary"),
            (b"ply\nformat ascii 1.0\nelement vertex 3\n", "model/ply"),
            (b"\x00" * 83, "model/stl"),
        ],
        ids=[
            "GLB shorter than its header says",
            "GLB version 1",
            "GLB cut in its header",
            "PLY header cut",
            "83 bytes",
        ],
    )
    def test_other_formats_cut_short_are_422(
        self, server: RunningApi, customer: httpx.Client, content: bytes, content_type: str
    ) -> None:
        refused(server, customer, content, content_type, 422)


class TestNamesAndFormats:
    @pytest.mark.parametrize("filename", ["ring.exe", "ring.stl.zip", ".stl/x.png", "ring"])
    def test_a_filename_naming_no_model_format_is_415(
        self, server: RunningApi, customer: httpx.Client, filename: str
    ) -> None:
        order_id = new_order(customer)
        files = stored_files(server.home)
        response = upload(customer, order_id, cube_stl(), "application/octet-stream", filename=filename)
        assert response.status_code == 415, response.text
        assert stored_files(server.home) == files

    def test_the_bytes_decide_not_the_names(self, server: RunningApi, customer: httpx.Client) -> None:
        """A Content-Type naming a model format wins over a filename that names none, but the bytes are
        still checked against it: an executable called an STL is refused."""
        order_id = new_order(customer)
        executable = b"MZ\x90\x00" + bytes(200)
        response = upload(customer, order_id, executable, "model/stl", filename="ring.exe")
        assert response.status_code == 422, response.text
        accepted = upload(customer, order_id, cube_stl(), "model/stl", filename="ring.exe")
        assert accepted.json()["model"]["format"] == "stl"

    @pytest.mark.parametrize(
        "content_type", ["model/gltf+json", "application/zip", "text/html", "model/stl2"]
    )
    def test_a_content_type_naming_no_model_format_is_415(
        self, server: RunningApi, customer: httpx.Client, content_type: str
    ) -> None:
        assert "not a model format" in refused(server, customer, cube_stl(), content_type, 415)

    @pytest.mark.parametrize(
        "filename",
        [
            "../../../../tmp/evil.stl",
            "..\\..\\evil.stl",
            "/etc/passwd.stl",
            "ring\x07\x1b[31m.stl",
            "x" * 250 + ".stl",
        ],
    )
    def test_a_hostile_filename_is_only_a_display_name(
        self, server: RunningApi, customer: httpx.Client, filename: str
    ) -> None:
        order_id = new_order(customer)
        response = upload(customer, order_id, cube_stl(), "application/octet-stream", filename=filename)
        assert response.status_code == 200, response.text
        shown = response.json()["model"]["filename"]
        assert "/" not in shown and "\\" not in shown and ".." not in shown, shown
        assert shown.isprintable() and 0 < len(shown) <= 200, shown
        blobs = (server.home / "blobs").resolve()
        assert all(p.resolve().is_relative_to(blobs) for p in stored_files(server.home))
        assert not Path("/tmp/evil.stl").exists()


class TestTriangleLimit:
    """The upload does not know the pricing limit; pricing refuses, saying how many is too many."""

    def many_triangles(self) -> np.ndarray:
        return np.concatenate([cube_triangles(10.0 + i) for i in range(MAX_TRIANGLES // 12 + 1)])

    @pytest.mark.parametrize("fmt", ["binary STL", "ASCII STL", "3MF"])
    def test_a_model_over_max_triangles_is_rejected_with_the_limit(
        self, customer: httpx.Client, fmt: str
    ) -> None:
        triangles = self.many_triangles()
        assert len(triangles) > MAX_TRIANGLES
        content: dict[str, tuple[bytes, str]] = {
            "binary STL": (binary_stl(triangles), "model/stl"),
            "ASCII STL": (ascii_stl(triangles), "model/stl"),
            "3MF": (three_mf({MODEL_PART: model_xml(triangles)}), "model/3mf"),
        }
        reason = rejected_by_pricing(customer, *content[fmt])
        assert "triangles" in reason and f"{MAX_TRIANGLES}" in reason, reason

    def test_a_model_within_the_limit_is_priced(self, customer: httpx.Client) -> None:
        """The control: the same server prices a model under the limit."""
        order_id = new_order(customer)
        assert upload(customer, order_id, cube_stl(), "model/stl").status_code == 200
        customer.post(f"/orders/{order_id}/submit")
        assert answered(customer, order_id)["status"] == "PRICE_CALCULATED"


def test_no_upload_left_a_partial_file(server: RunningApi) -> None:
    """Runs last in this module: whatever was refused above, nothing is left half-written."""
    incoming = server.home / "blobs" / "incoming"
    assert not incoming.exists() or list(incoming.iterdir()) == []
