"""`backbone up` makes a 3D preview of each quoted or too-thin model and serves it: to the order's owner on
the shop's read API, to staff on the MES's, to nobody else."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import trimesh

from pricing.preview import RED, stored
from tests.conftest import RunningApi
from tests.journeys import NEW_ORDER, answered, submit
from tests.unit.pricing.solids import binary_stl, ring

GLB = "model/gltf-binary"


@pytest.fixture(scope="module")
def owner(system: RunningApi) -> Iterator[httpx.Client]:
    with system.client("customer", "preview-owner") as c:
        yield c


@pytest.fixture(scope="module")
def stranger(system: RunningApi) -> Iterator[httpx.Client]:
    with system.client("customer", "preview-stranger") as c:
        yield c


@pytest.fixture(scope="module")
def seller(system: RunningApi) -> Iterator[httpx.Client]:
    with system.client("seller", "preview-seller") as c:
        yield c


def preview(client: httpx.Client, path: str, seconds: float = 30) -> httpx.Response:
    """The preview once the view shows it (the projection follows the pricing result)."""
    deadline = time.monotonic() + seconds
    while True:
        answer = client.get(path)
        if answer.status_code != 404 or time.monotonic() > deadline:
            return answer
        time.sleep(0.1)


def red_vertices(content: bytes) -> int:
    scene = trimesh.load(io.BytesIO(content), file_type="glb", process=False)
    (mesh,) = scene.geometry.values()
    colours = np.asarray(mesh.visual.vertex_colors)[:, :3]
    return int((colours == stored(RED)).all(axis=1).sum())


def test_the_owner_and_staff_get_the_preview_of_a_quote(
    owner: httpx.Client, stranger: httpx.Client, seller: httpx.Client
) -> None:
    order_id = submit(owner, binary_stl(ring(1.0, 1.0)))
    order = answered(owner, order_id)
    assert order["status"] == "PRICE_CALCULATED", order
    sha = order["quote"]["preview_sha256"]
    assert sha and len(sha) == 64
    mine = preview(owner, f"/shop/orders/{order_id}/preview")
    assert mine.status_code == 200, mine.text
    assert mine.headers["content-type"].startswith(GLB)
    assert mine.headers["etag"] == f'"{sha}"'
    assert mine.content[:4] == b"glTF"
    assert owner.get(f"/shop/orders/{order_id}").json()["preview_sha256"] == sha
    assert red_vertices(mine.content) == 0  # a sound 1 mm ring in gold (minimum 0.6 mm)
    # unchanged: revalidated without the body
    again = owner.get(f"/shop/orders/{order_id}/preview", headers={"If-None-Match": f'"{sha}"'})
    assert again.status_code == 304 and again.content == b""
    # another customer learns nothing, not even that the order exists
    theirs = stranger.get(f"/shop/orders/{order_id}/preview")
    assert theirs.status_code == 404 and "no order" in theirs.json()["detail"]
    # staff read it on the MES, not on the shop
    staff = preview(seller, f"/mes/orders/{order_id}/preview")
    assert staff.status_code == 200 and staff.content == mine.content
    assert seller.get(f"/shop/orders/{order_id}/preview").status_code == 404
    assert stranger.get(f"/mes/orders/{order_id}/preview").status_code == 403


def test_a_model_rejected_as_too_thin_shows_where_in_red(owner: httpx.Client, seller: httpx.Client) -> None:
    order_id = submit(owner, binary_stl(ring(1.0, 0.3)))
    order = answered(owner, order_id)
    assert order["status"] == "REJECTED" and "too thin" in order["rejection_reason"]
    mine = preview(owner, f"/shop/orders/{order_id}/preview")
    assert mine.status_code == 200, mine.text
    assert red_vertices(mine.content) > 0
    assert preview(seller, f"/mes/orders/{order_id}/preview").content == mine.content


def test_an_order_without_a_preview_yet_is_a_404_that_says_so(
    owner: httpx.Client, seller: httpx.Client
) -> None:
    created = owner.post("/orders", json=NEW_ORDER)
    order_id = created.json()["order_id"]
    answer = preview(owner, f"/shop/orders/{order_id}/preview", seconds=0)
    deadline = time.monotonic() + 10
    while "no preview yet" not in answer.text and time.monotonic() < deadline:  # the view catches up
        time.sleep(0.1)
        answer = owner.get(f"/shop/orders/{order_id}/preview")
    assert answer.status_code == 404 and "no preview yet" in answer.json()["detail"]
    assert "no preview yet" in seller.get(f"/mes/orders/{order_id}/preview").json()["detail"]
