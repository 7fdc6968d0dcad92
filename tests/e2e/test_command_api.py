"""The CRM command API over real HTTP, on a real PostgreSQL, in its own process."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from backbone.database import eventsourcing_env
from orders_core.actors import Actor
from orders_core.application import OrdersApplication
from orders_core.commands import RecordQuote, RejectModel
from orders_core.lifecycle import BY_ACTION, Role
from orders_core.outcomes import Accepted
from tests.conftest import RunningApi
from tests.meshes import cube_stl, open_box_stl
from tests.orders import quote_for

NEW_ORDER = {
    "contact_name": "Ann Example",
    "item_title": "Signet ring",
    "material_code": "AU750",
    "quantity": 1,
}
PRICING = Actor(Role.SERVICE, "pricing")


@pytest.fixture(scope="module")
def store(api: RunningApi) -> Iterator[OrdersApplication]:
    """The application on the API's database, as the pricing results consumer will use it."""
    app = OrdersApplication(env=eventsourcing_env(api.database_url, pool_size=2))
    yield app
    app.close()


@pytest.fixture(scope="module")
def customer(api: RunningApi) -> Iterator[httpx.Client]:
    with api.client("customer", "cust-1") as c:
        yield c


@pytest.fixture(scope="module")
def seller(api: RunningApi) -> Iterator[httpx.Client]:
    with api.client("seller", "seller-1") as c:
        yield c


@pytest.fixture(scope="module")
def operator(api: RunningApi) -> Iterator[httpx.Client]:
    with api.client("operator", "op-1") as c:
        yield c


def create(client: httpx.Client, **changes: Any) -> dict[str, Any]:
    response = client.post("/orders", json={**NEW_ORDER, **changes})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def upload(client: httpx.Client, order_id: str, content: bytes | None = None) -> httpx.Response:
    return client.put(
        f"/orders/{order_id}/model", content=content or cube_stl(), headers={"Content-Type": "model/stl"}
    )


def submitted(client: httpx.Client, **changes: Any) -> dict[str, Any]:
    order = create(client, **changes)
    assert upload(client, order["order_id"]).status_code == 200
    response = client.post(f"/orders/{order['order_id']}/submit")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def priced(store: OrdersApplication, order: dict[str, Any]) -> None:
    result = store.execute(order["order_id"], RecordQuote(quote_for(order["model"]["sha256"])), PRICING)
    assert isinstance(result, Accepted), result


def approved(client: httpx.Client, seller: httpx.Client, store: OrdersApplication) -> dict[str, Any]:
    order = submitted(client)
    priced(store, order)
    response = seller.post(f"/orders/{order['order_id']}/approve")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def position(api: RunningApi) -> int:
    value: int = httpx.get(f"{api.base_url}/health").json()["position"]
    return value


def test_an_order_goes_from_initiated_to_closed(
    customer: httpx.Client, seller: httpx.Client, operator: httpx.Client, store: OrdersApplication
) -> None:
    order = approved(customer, seller, store)
    assert order["status"] == "MANUFACTURING_APPROVED"
    assert order["quote"]["total_minor"] == 12345
    oid = order["order_id"]
    assert operator.post(f"/orders/{oid}/take").json()["operator_id"] == "op-1"
    assert operator.post(f"/orders/{oid}/complete").json()["status"] == "MANUFACTURING_COMPLETED"
    assert operator.post(f"/orders/{oid}/package").json()["status"] == "PACKAGING"
    shipped = operator.post(f"/orders/{oid}/ship", json={"carrier": "DHL", "tracking_number": "JD01460000"})
    assert shipped.json()["tracking_number"] == "JD01460000"
    closed = seller.post(f"/orders/{oid}/close")
    assert closed.json()["status"] == "CLOSED"
    history = customer.get(f"/orders/{oid}/history").json()
    assert [h["event"] for h in history] == [
        "OrderInitiated", "ModelAttached", "OrderSubmitted", "PriceCalculated", "ManufacturingApproved",
        "ManufacturingStarted", "ManufacturingCompleted", "PackagingStarted", "OrderShipped", "OrderClosed",
    ]  # fmt: skip
    assert set(customer.get(f"/orders/{oid}").json()["status_times"]) >= {"INITIATED", "CLOSED"}


def test_every_command_response_carries_the_position_it_reached(customer: httpx.Client) -> None:
    first = customer.post("/orders", json=NEW_ORDER)
    second = customer.post("/orders", json=NEW_ORDER)
    assert int(second.headers["X-Position"]) > int(first.headers["X-Position"]) > 0


def test_the_upload_is_stored_under_its_sha256(api: RunningApi, customer: httpx.Client) -> None:
    order = create(customer)
    content = cube_stl(12.5)
    body = upload(customer, order["order_id"], content).json()
    sha = hashlib.sha256(content).hexdigest()
    assert body["model"] == {
        "sha256": sha,
        "filename": "model.stl",
        "format": "stl",
        "size_bytes": len(content),
        "triangle_count": 12,
    }
    assert (api.home / "blobs" / sha[:2] / sha[2:4] / sha).read_bytes() == content


def test_the_filename_query_names_the_format(customer: httpx.Client) -> None:
    order = create(customer)
    response = customer.put(
        f"/orders/{order['order_id']}/model?filename=my%20ring.STL",
        content=cube_stl(),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["model"]["filename"] == "my ring.STL"


def test_an_owner_cancels_before_approval(customer: httpx.Client) -> None:
    order = submitted(customer)
    response = customer.post(f"/orders/{order['order_id']}/cancel", json={"reason": "found a cheaper offer"})
    assert response.status_code == 200
    assert response.json()["status"] == "CANCELLED"
    assert response.json()["cancellation_reason"] == "found a cheaper offer"


def test_a_rejected_model_can_be_replaced_and_resubmitted(
    customer: httpx.Client, store: OrdersApplication
) -> None:
    order = create(customer)
    assert upload(customer, order["order_id"], open_box_stl()).status_code == 200
    sent = customer.post(f"/orders/{order['order_id']}/submit").json()
    rejected = store.execute(
        order["order_id"], RejectModel(sent["model"]["sha256"], "the model is not watertight"), PRICING
    )
    assert isinstance(rejected, Accepted)
    seen = customer.get(f"/orders/{order['order_id']}").json()
    assert (seen["status"], seen["rejection_reason"]) == ("REJECTED", "the model is not watertight")
    assert upload(customer, order["order_id"]).json()["status"] == "FILE_UPLOADED"
    assert customer.post(f"/orders/{order['order_id']}/submit").json()["status"] == "SUBMITTED"


def test_a_retried_create_with_the_same_idempotency_key_returns_the_first_order(api: RunningApi) -> None:
    with api.client("partner", "partner-7") as partner:
        headers = {"Idempotency-Key": "po-2026-0042"}
        first = partner.post("/orders", json=NEW_ORDER, headers=headers)
        again = partner.post("/orders", json=NEW_ORDER, headers=headers)
        assert (first.status_code, again.status_code) == (201, 200)
        assert first.json()["order_id"] == again.json()["order_id"]
        assert first.json()["channel"] == "partner"


def test_the_same_idempotency_key_with_another_body_is_a_422(api: RunningApi) -> None:
    with api.client("partner", "partner-8") as partner:
        headers = {"Idempotency-Key": "po-2026-0043"}
        assert partner.post("/orders", json=NEW_ORDER, headers=headers).status_code == 201
        before = position(api)
        other = partner.post("/orders", json={**NEW_ORDER, "quantity": 2}, headers=headers)
        assert other.status_code == 422
        assert other.json()["error"] == "idempotency_key_reused"
        assert position(api) == before


def test_concurrent_idempotent_creates_make_one_order(api: RunningApi) -> None:
    with api.client("partner", "partner-9") as partner:
        headers = {"Idempotency-Key": "po-race"}
        with ThreadPoolExecutor(8) as pool:
            responses = list(
                pool.map(lambda _: partner.post("/orders", json=NEW_ORDER, headers=headers), range(8))
            )
    assert sorted(r.status_code for r in responses) == [200] * 7 + [201]
    assert len({r.json()["order_id"] for r in responses}) == 1


def test_twenty_operators_take_one_order_and_exactly_one_wins(
    api: RunningApi, customer: httpx.Client, seller: httpx.Client, store: OrdersApplication
) -> None:
    order = approved(customer, seller, store)
    clients = [api.client("operator", f"op-{i}") for i in range(20)]
    try:
        with ThreadPoolExecutor(20) as pool:
            responses = list(pool.map(lambda c: c.post(f"/orders/{order['order_id']}/take"), clients))
    finally:
        for c in clients:
            c.close()
    winners = [r for r in responses if r.status_code == 200]
    losers = [r for r in responses if r.status_code == 409]
    assert len(winners) == 1 and len(losers) == 19
    winner = winners[0].json()["operator_id"]
    assert all(r.json()["taken_by"] == winner and winner in r.json()["detail"] for r in losers)
    history = customer.get(f"/orders/{order['order_id']}/history").json()
    assert [h["event"] for h in history].count("ManufacturingStarted") == 1


def test_openapi_document_is_served(api: RunningApi) -> None:
    doc = httpx.get(f"{api.base_url}/schema/openapi.json").json()
    assert "/orders/{order_id}/take" in doc["paths"]
    assert "/orders" in doc["paths"]


def operations(doc: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Each operation of an OpenAPI document by its operationId: (path, method)."""
    return {
        op["operationId"]: (path, method)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if isinstance(op, dict) and "operationId" in op
    }


def test_a_new_order_links_to_every_operation_on_it(api: RunningApi) -> None:
    """Both answers of `POST /orders` (a new order, or the first one again) are documented as the order, and
    link its `order_id` to every operation on one order: what schemathesis' stateful phase follows."""
    doc = httpx.get(f"{api.base_url}/schema/openapi.json").json()
    by_id = operations(doc)
    on_one_order = {op_id for op_id, (path, _) in by_id.items() if path.startswith("/orders/{order_id}")}
    for status in ("201", "200"):
        answer = doc["paths"]["/orders"]["post"]["responses"][status]
        assert answer["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/OrderView"}
        links = answer["links"].values()
        assert {link["operationId"] for link in links} == on_one_order
        assert all(link["parameters"] == {"order_id": "$response.body#/order_id"} for link in links)
    linked_paths = {by_id[op_id][0] for op_id in on_one_order}
    assert {f"/orders/{{order_id}}/{action}" for action in BY_ACTION} <= linked_paths


def test_the_catalog_links_to_a_new_order_of_one_of_its_materials(
    api: RunningApi, customer: httpx.Client
) -> None:
    doc = httpx.get(f"{api.base_url}/schema/openapi.json").json()
    (link,) = doc["paths"]["/catalog"]["get"]["responses"]["200"]["links"].values()
    assert operations(doc)[link["operationId"]] == ("/orders", "post")
    pointer = link["requestBody"]["material_code"].removeprefix("$response.body#/")
    value: Any = customer.get("/catalog").json()
    for step in pointer.split("/"):
        value = value[int(step)] if isinstance(value, list) else value[step]
    assert create(customer, material_code=value)["material_code"] == value


def test_request_bodies_that_refuse_unknown_fields_say_so(api: RunningApi, customer: httpx.Client) -> None:
    doc = httpx.get(f"{api.base_url}/schema/openapi.json").json()
    bodies = {
        op["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        for item in doc["paths"].values()
        for op in item.values()
        if isinstance(op, dict) and "application/json" in op.get("requestBody", {}).get("content", {})
    }
    assert {"NewOrder", "ShipRequest", "CancelRequest", "MaterialRequest", "ProductRequest"} <= bodies
    assert all(doc["components"]["schemas"][name]["additionalProperties"] is False for name in bodies)
    refused = customer.post("/orders", json={**NEW_ORDER, "colour": "rose"})
    assert refused.status_code == 400 and "colour" in refused.text, refused.text


def test_the_catalog_is_seeded_with_real_densities(customer: httpx.Client) -> None:
    materials = {m["code"]: m for m in customer.get("/catalog").json()["materials"]}
    assert materials["AU585"]["density_g_cm3"] == pytest.approx(13.0)
    assert materials["AU750"]["density_g_cm3"] == pytest.approx(15.5)
    assert materials["AG925"]["density_g_cm3"] == pytest.approx(10.4)
    assert materials["PT950"]["density_g_cm3"] == pytest.approx(20.7)


def test_a_seller_changes_the_price_of_gold(seller: httpx.Client) -> None:
    body = {"name": "Gold 585 (14k)", "density_g_cm3": 13.0, "price_per_gram_minor": 7123}
    response = seller.put("/catalog/materials/AU585", json=body)
    assert response.status_code == 200, response.text
    assert int(response.headers["X-Position"]) > 0
    materials = {m["code"]: m for m in seller.get("/catalog").json()["materials"]}
    assert materials["AU585"]["price_per_gram_minor"] == 7123


def test_a_new_material_can_be_ordered(seller: httpx.Client, customer: httpx.Client) -> None:
    body = {"name": "Rose gold 585", "density_g_cm3": 13.2, "price_per_gram_minor": 6900}
    assert seller.put("/catalog/materials/au585r", json=body).status_code == 200
    assert create(customer, material_code="AU585R")["material_code"] == "AU585R"


def test_a_seller_sets_a_labour_rate_and_lists_a_product(seller: httpx.Client) -> None:
    rate = seller.put(
        "/catalog/labour/ENGRAVING", json={"name": "Engraving", "unit": "per_piece", "amount_minor": 2000}
    )
    assert rate.status_code == 200, rate.text
    product = {"title": "Hoop earrings", "material_code": "AG925", "price_minor": 4900}
    listed = seller.put("/catalog/products/HOOPS-AG925", json=product)
    assert "HOOPS-AG925" in {p["sku"] for p in listed.json()["products"]}
    removed = seller.delete("/catalog/products/HOOPS-AG925")
    assert "HOOPS-AG925" not in {p["sku"] for p in removed.json()["products"]}


@pytest.mark.parametrize("hours", [0, 0.00001, 0.09, 2001, -1])
def test_a_manufacturing_estimate_outside_6_minutes_to_2000_hours_is_a_400(
    seller: httpx.Client, hours: float
) -> None:
    body = {
        "name": "Palladium 950",
        "density_g_cm3": 12.0,
        "price_per_gram_minor": 5000,
        "manufacturing_hours": hours,
    }
    answer = seller.put("/catalog/materials/PD950", json=body)
    assert answer.status_code == 400, answer.text
    assert "manufacturing_hours" in answer.text


def test_a_seller_sets_a_materials_manufacturing_estimate(seller: httpx.Client) -> None:
    body = {
        "name": "Palladium 950",
        "density_g_cm3": 12.0,
        "price_per_gram_minor": 5000,
        "manufacturing_hours": 0.1,
    }
    answer = seller.put("/catalog/materials/PD950", json=body)
    assert answer.status_code == 200, answer.text
    material = next(m for m in answer.json()["materials"] if m["code"] == "PD950")
    assert material["manufacturing_hours"] == 0.1
