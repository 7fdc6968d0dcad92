"""A quote holds its terms (`backbone up`, quotes valid for VALID_SECONDS): an expired quote is not
approved, the order is re-priced at today's catalog, and both views show until when a quote holds."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.conftest import PostgresServer, RunningApi, serve
from tests.journeys import answered, submit
from tests.meshes import cube_stl

VALID_SECONDS = 30.0
"""Long enough to approve a fresh quote on a busy machine, short enough to wait for one to expire."""


@pytest.fixture(scope="module")
def system(postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApi]:
    yield from serve(postgres, tmp_path_factory, "up", QUOTE_VALID_HOURS=str(VALID_SECONDS / 3600))


@pytest.fixture(scope="module")
def customer(system: RunningApi) -> Iterator[httpx.Client]:
    with system.client("customer", "terms-customer") as c:
        yield c


@pytest.fixture(scope="module")
def seller(system: RunningApi) -> Iterator[httpx.Client]:
    with system.client("seller", "terms-seller") as c:
        yield c


def until(quote: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(quote["valid_until"])


def view(client: httpx.Client, path: str, position: str) -> dict[str, Any]:
    answer = client.get(path, params={"min_position": position})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_a_quote_records_its_catalog_metal_price_and_term(
    customer: httpx.Client, seller: httpx.Client
) -> None:
    catalog = seller.get("/catalog").json()
    gold = next(m for m in catalog["materials"] if m["code"] == "AU750")
    order = answered(customer, submit(customer, cube_stl(10.0)))
    quote = order["quote"]
    assert quote["catalog_version"] == catalog["version"]
    assert quote["metal_price_per_gram_minor"] == gold["price_per_gram_minor"]
    recorded = datetime.fromisoformat(order["status_times"]["PRICE_CALCULATED"])
    assert 0 < (until(quote) - recorded).total_seconds() <= VALID_SECONDS
    approved = seller.post(f"/orders/{order['order_id']}/approve")
    assert approved.status_code == 200, approved.text


def test_an_expired_quote_is_refused_and_the_re_priced_order_is_approved(
    customer: httpx.Client, seller: httpx.Client
) -> None:
    order_id = submit(customer, cube_stl(10.0))
    first = answered(customer, order_id)["quote"]
    time.sleep(max(0.0, (until(first) - datetime.now(UTC)).total_seconds()) + 0.5)

    refused = seller.post(f"/orders/{order_id}/approve")
    assert refused.status_code == 409, refused.text
    body = refused.json()
    assert body["error"] == "quote_expired" and "expired" in body["detail"]
    assert body["reprice"] == f"/orders/{order_id}/reprice"
    assert body["status"] == "PRICE_CALCULATED" and "RepriceOrder" in body["allowed"]
    assert datetime.fromisoformat(body["valid_until"]) == until(first)

    # Gold went up since: the re-price uses today's catalog.
    gold = next(m for m in seller.get("/catalog").json()["materials"] if m["code"] == "AU750")
    raised = {k: v for k, v in gold.items() if k != "code"}
    raised["price_per_gram_minor"] = 2 * gold["price_per_gram_minor"]
    changed = seller.put("/catalog/materials/AU750", json=raised)
    assert changed.status_code == 200, changed.text
    repriced = customer.post(f"/orders/{order_id}/reprice")
    assert repriced.status_code == 200, repriced.text
    assert repriced.json()["status"] == "SUBMITTED"
    order = answered(customer, order_id)
    assert order["status"] == "PRICE_CALCULATED"
    second = order["quote"]
    assert second["catalog_version"] == changed.json()["version"] > first["catalog_version"]
    assert second["metal_price_per_gram_minor"] == 2 * first["metal_price_per_gram_minor"]
    assert second["total_minor"] > first["total_minor"] and until(second) > until(first)
    approved = seller.post(f"/orders/{order_id}/approve")
    assert approved.status_code == 200, approved.text
    history = [e["event"] for e in customer.get(f"/orders/{order_id}/history").json()]
    assert history.count("PriceCalculated") == 2 and "RepriceRequested" in history


def test_the_views_show_until_when_a_quote_holds(customer: httpx.Client, seller: httpx.Client) -> None:
    order_id = submit(customer, cube_stl(9.0))
    quote = answered(customer, order_id)["quote"]
    position = customer.get(f"/orders/{order_id}").headers["X-Position"]
    shop = view(customer, f"/shop/orders/{order_id}", position)
    assert until(shop["quote"]) == until(quote)
    mes = view(seller, "/mes/orders", position)
    row = next(o for o in mes["items"] if o["order_id"] == order_id)
    assert datetime.fromisoformat(row["quote_valid_until"]) == until(quote)
    # Re-priced, both views move to the new quote's term.
    assert customer.post(f"/orders/{order_id}/reprice").status_code == 200
    again = answered(customer, order_id)
    position = customer.get(f"/orders/{order_id}").headers["X-Position"]
    assert until(view(customer, f"/shop/orders/{order_id}", position)["quote"]) == until(again["quote"])
    mes = view(seller, "/mes/orders", position)
    row = next(o for o in mes["items"] if o["order_id"] == order_id)
    assert datetime.fromisoformat(row["quote_valid_until"]) == until(again["quote"]) > until(quote)


def test_only_the_owner_or_a_seller_re_prices(system: RunningApi, customer: httpx.Client) -> None:
    order_id = submit(customer, cube_stl(8.0))
    answered(customer, order_id)
    with system.client("operator", "terms-operator") as operator, system.client("customer", "other") as other:
        assert operator.post(f"/orders/{order_id}/reprice").status_code == 403
        assert other.post(f"/orders/{order_id}/reprice").status_code == 403
