"""Bad input gets a clear 4xx with a reason, never a 500, and leaves the event store unchanged."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from uuid import uuid4

import httpx
import jwt
import pytest

from http_edge.identity import mint_token
from orders_core.lifecycle import Role
from tests.conftest import JWT_SECRET, RunningApi
from tests.meshes import cube_stl

NEW_ORDER = {
    "contact_name": "Ann Example",
    "item_title": "Signet ring",
    "material_code": "AU750",
    "quantity": 1,
}


@pytest.fixture(scope="module")
def customer(api: RunningApi) -> Iterator[httpx.Client]:
    with api.client("customer", "cust-1") as c:
        yield c


@pytest.fixture
def unchanged(api: RunningApi) -> Iterator[None]:
    """Fails the test if the event store moved while it ran."""
    before = httpx.get(f"{api.base_url}/health").json()["position"]
    yield
    assert httpx.get(f"{api.base_url}/health").json()["position"] == before


@pytest.fixture(scope="module")
def order(customer: httpx.Client) -> dict[str, Any]:
    """One INITIATED order; every test here is refused, so it stays as it is."""
    response = customer.post("/orders", json=NEW_ORDER)
    assert response.status_code == 201
    body: dict[str, Any] = response.json()
    return body


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["error"] and body["detail"], body
    return body


@pytest.mark.usefixtures("unchanged")
class TestRefusedWithoutEffect:
    def test_unknown_order_is_404(self, customer: httpx.Client) -> None:
        error_of(customer.post(f"/orders/{uuid4()}/submit"), 404)
        error_of(customer.get(f"/orders/{uuid4()}"), 404)

    def test_malformed_order_id_is_a_4xx(self, customer: httpx.Client) -> None:
        response = customer.get("/orders/not-a-uuid")
        assert 400 <= response.status_code < 500

    def test_command_not_allowed_now_is_409_with_status_and_allowed(
        self, customer: httpx.Client, order: dict[str, Any], api: RunningApi
    ) -> None:
        with api.client("seller", "seller-1") as seller:
            body = error_of(seller.post(f"/orders/{order['order_id']}/approve"), 409)
        assert body["status"] == "INITIATED"
        assert set(body["allowed"]) == {"AttachModel", "CancelOrder"}

    def test_wrong_role_is_403(self, customer: httpx.Client, order: dict[str, Any]) -> None:
        error_of(customer.post(f"/orders/{order['order_id']}/take"), 403)

    def test_someone_elses_order_is_403(self, api: RunningApi, order: dict[str, Any]) -> None:
        with api.client("customer", "cust-2") as stranger:
            error_of(stranger.post(f"/orders/{order['order_id']}/cancel", json={"reason": "mine now"}), 403)
            error_of(stranger.get(f"/orders/{order['order_id']}"), 403)
            error_of(
                stranger.put(
                    f"/orders/{order['order_id']}/model",
                    content=cube_stl(),
                    headers={"Content-Type": "model/stl"},
                ),
                403,
            )

    def test_malformed_json_is_400(self, customer: httpx.Client) -> None:
        response = customer.post(
            "/orders", content=b'{"contact_name": ', headers={"Content-Type": "application/json"}
        )
        error_of(response, 400)

    def test_missing_fields_are_400_and_named(self, customer: httpx.Client) -> None:
        body = error_of(customer.post("/orders", json={"contact_name": "Ann"}), 400)
        assert "item_title" in str(body)

    @pytest.mark.parametrize("quantity", [-1, 0, 1001, "two", 1.5])
    def test_bad_quantity_is_400(self, customer: httpx.Client, quantity: object) -> None:
        error_of(customer.post("/orders", json={**NEW_ORDER, "quantity": quantity}), 400)

    def test_blank_names_are_400(self, customer: httpx.Client) -> None:
        error_of(customer.post("/orders", json={**NEW_ORDER, "contact_name": "   "}), 400)

    def test_unknown_fields_are_400(self, customer: httpx.Client) -> None:
        error_of(customer.post("/orders", json={**NEW_ORDER, "price": 1}), 400)

    def test_unknown_material_is_422(self, customer: httpx.Client) -> None:
        body = error_of(customer.post("/orders", json={**NEW_ORDER, "material_code": "UNOBTAINIUM"}), 422)
        assert "UNOBTAINIUM" in body["detail"]

    def test_a_json_array_body_is_400(self, customer: httpx.Client) -> None:
        error_of(customer.post("/orders", json=[NEW_ORDER]), 400)

    def test_ship_without_tracking_number_is_400(self, api: RunningApi, order: dict[str, Any]) -> None:
        with api.client("operator", "op-1") as operator:
            error_of(operator.post(f"/orders/{order['order_id']}/ship", json={"carrier": "DHL"}), 400)

    def test_cancel_without_reason_is_400(self, customer: httpx.Client, order: dict[str, Any]) -> None:
        error_of(customer.post(f"/orders/{order['order_id']}/cancel", json={}), 400)
        error_of(customer.post(f"/orders/{order['order_id']}/cancel"), 400)


@pytest.mark.usefixtures("unchanged")
class TestBadTokens:
    def test_no_token_is_401(self, api: RunningApi) -> None:
        with api.anonymous() as anonymous:
            error_of(anonymous.post("/orders", json=NEW_ORDER), 401)

    def test_garbage_token_is_401(self, api: RunningApi) -> None:
        with api.anonymous() as anonymous:
            error_of(
                anonymous.post("/orders", json=NEW_ORDER, headers={"Authorization": "Bearer abc.def"}), 401
            )

    def test_expired_token_is_401(self, api: RunningApi) -> None:
        token = mint_token(JWT_SECRET, Role.CUSTOMER, "cust-1", ttl=timedelta(seconds=-60))
        with api.anonymous() as anonymous:
            body = error_of(
                anonymous.post("/orders", json=NEW_ORDER, headers={"Authorization": f"Bearer {token}"}), 401
            )
        assert "expired" in body["detail"]

    def test_token_signed_with_another_key_is_401(self, api: RunningApi) -> None:
        token = mint_token("another-secret-" + "y" * 40, Role.ADMIN, "mallory")
        with api.anonymous() as anonymous:
            error_of(
                anonymous.post("/orders", json=NEW_ORDER, headers={"Authorization": f"Bearer {token}"}), 401
            )

    def test_unsigned_token_is_401(self, api: RunningApi) -> None:
        token = jwt.encode(
            {"sub": "mallory", "role": "admin", "aud": "alexandrite-backbone", "exp": 2**31},
            key=None,
            algorithm="none",
        )
        with api.anonymous() as anonymous:
            error_of(
                anonymous.post("/orders", json=NEW_ORDER, headers={"Authorization": f"Bearer {token}"}), 401
            )

    def test_unknown_role_is_401(self, api: RunningApi) -> None:
        token = jwt.encode(
            {"sub": "x", "role": "root", "aud": "alexandrite-backbone", "exp": 2**31},
            JWT_SECRET,
            algorithm="HS256",
        )
        with api.anonymous() as anonymous:
            error_of(
                anonymous.post("/orders", json=NEW_ORDER, headers={"Authorization": f"Bearer {token}"}), 401
            )


def three_mf(inner: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("3D/3dmodel.model", inner)
    return buffer.getvalue()


@pytest.mark.usefixtures("unchanged")
class TestBadUploads:
    def put(
        self, client: httpx.Client, order: dict[str, Any], content: bytes, content_type: str
    ) -> httpx.Response:
        return client.put(
            f"/orders/{order['order_id']}/model", content=content, headers={"Content-Type": content_type}
        )

    def test_oversized_upload_is_413(self, customer: httpx.Client, order: dict[str, Any]) -> None:
        error_of(self.put(customer, order, b"\0" * (2 * 1024 * 1024 + 1), "model/stl"), 413)

    def test_oversized_chunked_upload_is_413(self, customer: httpx.Client, order: dict[str, Any]) -> None:
        def chunks() -> Iterator[bytes]:
            for _ in range(40):
                yield b"\0" * 65536

        response = customer.put(
            f"/orders/{order['order_id']}/model", content=chunks(), headers={"Content-Type": "model/stl"}
        )
        error_of(response, 413)

    def test_unknown_format_is_415(self, customer: httpx.Client, order: dict[str, Any]) -> None:
        error_of(self.put(customer, order, cube_stl(), "image/png"), 415)

    def test_unnamed_format_is_415(self, customer: httpx.Client, order: dict[str, Any]) -> None:
        error_of(self.put(customer, order, cube_stl(), "application/octet-stream"), 415)

    def test_truncated_stl_is_422(self, customer: httpx.Client, order: dict[str, Any]) -> None:
        body = error_of(self.put(customer, order, cube_stl()[:-20], "model/stl"), 422)
        assert "truncated" in body["detail"]

    def test_empty_upload_is_400(self, customer: httpx.Client, order: dict[str, Any]) -> None:
        error_of(self.put(customer, order, b"", "model/stl"), 400)

    def test_png_named_stl_is_422(self, customer: httpx.Client, order: dict[str, Any]) -> None:
        error_of(self.put(customer, order, b"\x89PNG\r\n\x1a\n" + b"\0" * 100, "model/stl"), 422)

    def test_zip_that_is_not_3mf_is_422(self, customer: httpx.Client, order: dict[str, Any]) -> None:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("readme.txt", "hello")
        error_of(self.put(customer, order, buffer.getvalue(), "model/3mf"), 422)

    def test_3mf_that_unpacks_too_large_is_413(self, customer: httpx.Client, order: dict[str, Any]) -> None:
        bomb = three_mf(b"<model>" + b" " * (5 * 1024 * 1024) + b"</model>")
        assert len(bomb) < 100_000
        error_of(self.put(customer, order, bomb, "model/3mf"), 413)

    def test_binary_garbage_as_obj_is_422(self, customer: httpx.Client, order: dict[str, Any]) -> None:
        error_of(self.put(customer, order, bytes(range(256)) * 4, "model/obj"), 422)

    def test_a_refused_upload_leaves_no_blob_behind(
        self, api: RunningApi, customer: httpx.Client, order: dict[str, Any]
    ) -> None:
        self.put(customer, order, cube_stl()[:-20], "model/stl")
        assert list((api.home / "blobs" / "incoming").iterdir()) == []
