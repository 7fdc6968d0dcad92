"""Partner API hardening over real HTTP: rate limit per partner, idempotency window, request size limits."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import (
    PostgresServer,
    RunningApi,
    serve,
)
from tests.journeys import NEW_ORDER
from tests.meshes import cube_stl

PER_MINUTE = 30
"""Low enough to reach in a test, high enough that one request more is due every 2 s."""
MAX_UPLOAD = 256 * 1024
JSON_LIMIT = 1024 * 1024
NOWHERE = "/orders/00000000-0000-0000-0000-000000000000"
"""A read that needs a token (so it is counted) and touches nothing: 404."""


@pytest.fixture(scope="module")
def api(postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApi]:
    """`backbone api` with a low rate limit, a 48-hour idempotency window and small uploads."""
    yield from serve(
        postgres,
        tmp_path_factory,
        "api",
        MAX_UPLOAD_BYTES=str(MAX_UPLOAD),
        RATE_LIMIT_PER_MINUTE=str(PER_MINUTE),
        IDEMPOTENCY_WINDOW_HOURS="48",
    )


def position(api: RunningApi) -> int:
    value: int = httpx.get(f"{api.base_url}/health").json()["position"]
    return value


def error_of(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["error"] == code and body["detail"], body
    return body


class TestRateLimit:
    def test_a_partner_over_the_limit_gets_429_with_retry_after(self, api: RunningApi) -> None:
        with api.client("partner", "acme") as partner:
            assert all(partner.get(NOWHERE).status_code == 404 for _ in range(PER_MINUTE - 1))
            assert partner.post("/orders", json=NEW_ORDER).status_code == 201
            before = position(api)
            refused = partner.post("/orders", json=NEW_ORDER)
            body = error_of(refused, 429, "too_many_requests")
            assert position(api) == before  # nothing appended
            wait = int(refused.headers["Retry-After"])
            assert 1 <= wait <= 60 / PER_MINUTE and body["retry_after"] == wait
            assert str(PER_MINUTE) in body["detail"]
            time.sleep(wait)
            assert partner.post("/orders", json=NEW_ORDER).status_code == 201  # due again
            error_of(partner.get(NOWHERE), 429, "too_many_requests")

    def test_another_partner_is_not_affected(self, api: RunningApi) -> None:
        with api.client("partner", "hog") as hog, api.client("partner", "bystander") as bystander:
            statuses = [hog.get(NOWHERE).status_code for _ in range(PER_MINUTE + 5)]
            assert statuses.count(429) >= 5
            assert bystander.post("/orders", json=NEW_ORDER).status_code == 201

    @pytest.mark.parametrize("role", ["seller", "customer", "operator"])
    def test_other_roles_are_not_limited(self, api: RunningApi, role: str) -> None:
        with api.client(role, "busy") as client:
            statuses = {client.get(NOWHERE).status_code for _ in range(PER_MINUTE * 2)}
        assert statuses == {404}

    def test_health_and_the_schema_are_not_limited(self, api: RunningApi) -> None:
        with api.client("partner", "prober") as partner:
            statuses = {partner.get("/health").status_code for _ in range(PER_MINUTE * 2)}
        assert statuses == {200}


class TestIdempotencyWindow:
    def test_a_retry_within_the_window_returns_the_first_order(self, api: RunningApi) -> None:
        with api.client("partner", "idem") as partner:
            headers = {"Idempotency-Key": "po-window-1"}
            first = partner.post("/orders", json=NEW_ORDER, headers=headers)
            again = partner.post("/orders", json=NEW_ORDER, headers=headers)
        assert (first.status_code, again.status_code) == (201, 200)
        assert again.json()["order_id"] == first.json()["order_id"]

    def test_the_window_is_documented_in_the_schema(self, api: RunningApi) -> None:
        schema = httpx.get(f"{api.base_url}/schema/openapi.json").json()
        assert "48 hours" in schema["info"]["description"]  # this deployment's window
        assert f"{PER_MINUTE} requests a minute per partner" in schema["info"]["description"]
        create = schema["paths"]["/orders"]["post"]
        (key,) = [p for p in create["parameters"] if p["name"] == "Idempotency-Key"]
        assert "IDEMPOTENCY_WINDOW_HOURS" in key["description"] and "24 hours" in key["description"]


class TestSizeLimits:
    """Oversized requests are a 4xx with a reason, and leave the event store as it was."""

    @pytest.fixture
    def customer(self, api: RunningApi) -> Iterator[httpx.Client]:
        with api.client("customer", "big-sender") as client:
            yield client

    @pytest.fixture
    def unchanged(self, api: RunningApi) -> Iterator[None]:
        before = position(api)
        yield
        assert position(api) == before

    @pytest.mark.usefixtures("unchanged")
    def test_a_json_body_over_the_limit_is_413(self, customer: httpx.Client) -> None:
        body = error_of(
            customer.post("/orders", json={**NEW_ORDER, "contact_name": "A" * JSON_LIMIT}), 413, "too_large"
        )
        assert str(JSON_LIMIT) in body["detail"]

    @pytest.mark.usefixtures("unchanged")
    def test_a_chunked_json_body_over_the_limit_is_413(self, customer: httpx.Client) -> None:
        def chunks() -> Iterator[bytes]:
            yield b'{"contact_name": "'
            for _ in range(20):
                yield b"A" * 65536
            yield b'", "item_title": "Ring", "material_code": "AU750"}'

        response = customer.post("/orders", content=chunks(), headers={"Content-Type": "application/json"})
        error_of(response, 413, "too_large")

    @pytest.mark.usefixtures("unchanged")
    def test_a_field_over_its_length_is_400(self, customer: httpx.Client) -> None:
        body = error_of(
            customer.post("/orders", json={**NEW_ORDER, "contact_name": "A" * 1000}), 400, "bad_request"
        )
        assert "contact_name" in str(body)

    @pytest.mark.usefixtures("unchanged")
    @pytest.mark.parametrize("length", [201, 10_000])
    def test_an_over_long_idempotency_key_is_400(self, customer: httpx.Client, length: int) -> None:
        response = customer.post("/orders", json=NEW_ORDER, headers={"Idempotency-Key": "k" * length})
        body = error_of(response, 400, "bad_request")
        assert "Idempotency-Key" in str(body) or "idempotency" in str(body).lower()

    @pytest.mark.usefixtures("unchanged")
    def test_an_over_long_query_value_is_400(self, customer: httpx.Client) -> None:
        response = customer.put(f"{NOWHERE}/model", params={"filename": "a" * 10_000 + ".stl"}, content=b"x")
        error_of(response, 400, "bad_request")

    def test_a_huge_header_is_a_4xx(self, api: RunningApi) -> None:
        response = httpx.get(f"{api.base_url}/health", headers={"X-Padding": "p" * (1024 * 1024)})
        assert 400 <= response.status_code < 500, response.status_code

    def test_an_upload_over_max_upload_bytes_is_413(self, api: RunningApi, customer: httpx.Client) -> None:
        created = customer.post("/orders", json=NEW_ORDER)
        assert created.status_code == 201
        order = created.json()["order_id"]
        before = position(api)
        upload = cube_stl() + b"\0" * MAX_UPLOAD
        response = customer.put(
            f"/orders/{order}/model", content=upload, headers={"Content-Type": "model/stl"}
        )
        body = error_of(response, 413, "too_large")
        assert str(MAX_UPLOAD) in body["detail"]
        assert position(api) == before
        assert customer.get(f"/orders/{order}").json()["status"] == "INITIATED"
        assert list((api.home / "blobs" / "incoming").iterdir()) == []
