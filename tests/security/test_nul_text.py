"""A NUL character in any text a client sends is a 400 at the edge.

PostgreSQL text cannot hold NUL. Before this was checked, a customer's order named "A\\u0000B" was
accepted and stored, and then every projection stopped at its event for good (the shop and MES views
froze, with no 5xx anywhere), and a NUL in a read API filter was a 500.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from orders_core.lifecycle import Role
from tests.conftest import RunningApi
from tests.journeys import NEW_ORDER
from tests.security.servers import position

NUL = "a\x00b"
MATERIAL = {"name": "Gold 750", "density_g_cm3": 15.5, "price_per_gram_minor": 5000}
LABOUR = {"name": "Setting", "unit": "per_piece", "amount_minor": 1000}
PRODUCT = {"title": "Ring", "material_code": "AU750", "price_minor": 10000, "description": "plain"}


@pytest.fixture(scope="module")
def seller(system: RunningApi) -> Iterator[httpx.Client]:
    with system.client(Role.SELLER, "nul-seller") as client:
        yield client


@pytest.fixture(scope="module")
def customer(system: RunningApi) -> Iterator[httpx.Client]:
    with system.client(Role.CUSTOMER, "nul-customer") as client:
        yield client


@pytest.fixture(scope="module")
def order_id(customer: httpx.Client) -> str:
    created = customer.post("/orders", json=NEW_ORDER)
    assert created.status_code == 201, created.text
    found: str = created.json()["order_id"]
    return found


@pytest.fixture
def still(system: RunningApi, order_id: str) -> Iterator[None]:
    before = position(system)
    yield
    assert position(system) == before


def bad_request(response: httpx.Response, field: str) -> None:
    """A 400 that blames `field`: the NUL, not some other flaw of the request, was refused."""
    assert response.status_code == 400, response.text
    assert response.json()["error"] and response.json()["detail"]
    assert field in response.text, response.text


@pytest.mark.usefixtures("still")
class TestCommandApi:
    @pytest.mark.parametrize("field", ["contact_name", "item_title", "material_code"])
    def test_a_new_order(self, customer: httpx.Client, field: str) -> None:
        bad_request(customer.post("/orders", json={**NEW_ORDER, field: NUL}), field)

    @pytest.mark.parametrize(
        ("action", "body"),
        [
            ("ship", {"carrier": NUL, "tracking_number": "1"}),
            ("ship", {"carrier": "DHL", "tracking_number": NUL}),
            ("cancel", {"reason": NUL}),
        ],
    )
    def test_a_command(self, seller: httpx.Client, order_id: str, action: str, body: dict[str, str]) -> None:
        field = next(k for k, v in body.items() if v == NUL)
        bad_request(seller.post(f"/orders/{order_id}/{action}", json=body), field)

    @pytest.mark.parametrize(
        ("path", "body"),
        [
            ("/catalog/materials/AU999", {**MATERIAL, "name": NUL}),
            ("/catalog/labour/SETTING2", {**LABOUR, "name": NUL}),
            ("/catalog/products/RING-NUL", {**PRODUCT, "title": NUL}),
            ("/catalog/products/RING-NUL", {**PRODUCT, "description": NUL}),
            ("/catalog/products/RING-NUL", {**PRODUCT, "material_code": NUL}),
        ],
    )
    def test_the_catalog(self, seller: httpx.Client, path: str, body: dict[str, Any]) -> None:
        bad_request(seller.put(path, json=body), next(k for k, v in body.items() if v == NUL))


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/mes/orders", {"material_code": NUL}),
        ("/mes/orders", {"channel": NUL}),
        ("/mes/orders", {"operator_id": NUL}),
        ("/mes/orders", {"q": NUL}),
        ("/mes/orders", {"status": NUL}),
        ("/shop/orders", {"owner_id": NUL}),
    ],
)
def test_a_read_api_filter(seller: httpx.Client, path: str, params: dict[str, str]) -> None:
    bad_request(seller.get(path, params=params), next(iter(params)))


def test_text_without_nul_still_passes_and_the_views_keep_up(
    system: RunningApi, customer: httpx.Client, seller: httpx.Client
) -> None:
    """The control, run last: tabs, newlines and non-Latin text pass, and both views reach the end."""
    created = customer.post(
        "/orders", json={**NEW_ORDER, "contact_name": "Zoë\tÅström\n", "item_title": "戒指"}
    )
    assert created.status_code == 201, created.text
    wait = {"min_position": position(system)}
    assert seller.get("/mes/stats", params=wait).status_code == 200
    shown = customer.get(f"/shop/orders/{created.json()['order_id']}", params=wait)
    assert shown.status_code == 200 and shown.json()["item_title"] == "戒指"
