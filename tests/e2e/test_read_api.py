"""The read API of `backbone up`: the shop's and the MES's views, read-your-writes, filters, keyset pages."""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import RunningApi
from tests.journeys import answered
from tests.meshes import cube_stl


@pytest.fixture(scope="module")
def customer(system: RunningApi) -> Iterator[httpx.Client]:
    with system.client("customer", "ann") as c:
        yield c


@pytest.fixture(scope="module")
def seller(system: RunningApi) -> Iterator[httpx.Client]:
    with system.client("seller", "sam") as c:
        yield c


@pytest.fixture(scope="module")
def operator(system: RunningApi) -> Iterator[httpx.Client]:
    with system.client("operator", "olga") as c:
        yield c


def create(client: httpx.Client, **fields: Any) -> httpx.Response:
    body = {"contact_name": "Ann Example", "item_title": "Signet ring", "material_code": "AU750", **fields}
    response = client.post("/orders", json=body)
    assert response.status_code == 201, response.text
    return response


def approve(client: httpx.Client, seller: httpx.Client, **fields: Any) -> httpx.Response:
    order = create(client, **fields).json()
    client.put(
        f"/orders/{order['order_id']}/model", content=cube_stl(), headers={"Content-Type": "model/stl"}
    )
    client.post(f"/orders/{order['order_id']}/submit")
    assert answered(client, order["order_id"])["status"] == "PRICE_CALCULATED"
    response = seller.post(f"/orders/{order['order_id']}/approve")
    assert response.status_code == 200, response.text
    return response


def test_a_client_reads_its_own_write_with_min_position(customer: httpx.Client) -> None:
    created = create(customer, item_title="Read-your-writes ring")
    position = created.headers["X-Position"]
    seen = customer.get(f"/shop/orders/{created.json()['order_id']}", params={"min_position": position})
    assert seen.status_code == 200, seen.text
    assert seen.json()["item_title"] == "Read-your-writes ring"
    assert int(seen.headers["X-Position"]) >= int(position)


def test_a_position_the_store_never_reached_is_a_400_after_the_wait(customer: httpx.Client) -> None:
    response = customer.get("/shop/catalog", params={"min_position": 10**9})
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request" and "X-Position" in response.json()["detail"]


def test_a_real_position_the_view_has_not_reached_is_a_503_with_retry_after(
    system: RunningApi, customer: httpx.Client
) -> None:
    created = create(customer, item_title="Behind the view")
    position = int(created.headers["X-Position"])
    with psycopg.connect(system.database_url, autocommit=True) as conn:
        # The shop runner cannot commit its next batch while this lock is held (as under a long lock).
        conn.execute("BEGIN")
        conn.execute("LOCK TABLE shop.tracking IN SHARE MODE")  # reads pass, its position cannot move
        later = create(customer, item_title="Stuck behind the lock")
        response = customer.get("/shop/catalog", params={"min_position": later.headers["X-Position"]})
        conn.execute("ROLLBACK")
    assert position < int(later.headers["X-Position"])
    assert response.status_code == 503 and response.headers["Retry-After"]
    assert response.json()["error"] == "unavailable"


def test_the_shop_catalog_is_public_and_follows_price_changes(
    system: RunningApi, seller: httpx.Client
) -> None:
    body = {"name": "Sterling silver 925", "density_g_cm3": 10.4, "price_per_gram_minor": 171}
    changed = seller.put("/catalog/materials/AG925", json=body)
    with system.anonymous() as anyone:
        catalog = anyone.get("/shop/catalog", params={"min_position": changed.headers["X-Position"]}).json()
    materials = {m["code"]: m for m in catalog["materials"]}
    assert materials["AG925"]["price_per_gram_minor"] == 171
    assert {p["sku"] for p in catalog["products"]} >= {"RING-SOLITAIRE-AU750"}


def test_customers_list_only_their_own_orders(system: RunningApi, customer: httpx.Client) -> None:
    mine = create(customer).json()
    with system.client("customer", "bob") as bob:
        theirs = create(bob)
        listed = bob.get("/shop/orders", params={"min_position": theirs.headers["X-Position"]}).json()
        assert {o["owner_id"] for o in listed["items"]} == {"bob"}
        assert bob.get(f"/shop/orders/{mine['order_id']}").status_code == 404


def test_shop_order_pages_cover_every_order_once(system: RunningApi) -> None:
    with system.client("partner", "p-pages") as partner:
        ids = [create(partner).json()["order_id"] for _ in range(5)]
        last = partner.post(
            "/orders", json={"contact_name": "x", "item_title": "y", "material_code": "AU585"}
        )
        seen: list[str] = []
        params: dict[str, Any] = {"limit": 2, "min_position": last.headers["X-Position"]}
        while True:
            page = partner.get("/shop/orders", params=params).json()
            seen += [o["order_id"] for o in page["items"]]
            if page["next_cursor"] is None:
                break
            params = {"limit": 2, "cursor": page["next_cursor"]}
    assert set(seen) == {*ids, last.json()["order_id"]} and len(seen) == 6


def test_mes_lists_newest_approved_first_with_keyset_pages(
    customer: httpx.Client, seller: httpx.Client, operator: httpx.Client
) -> None:
    approved = [approve(customer, seller, material_code="PT950") for _ in range(5)]
    params: dict[str, Any] = {
        "material_code": "PT950",
        "limit": 2,
        "min_position": approved[-1].headers["X-Position"],
    }
    seen = []
    while True:
        page = operator.get("/mes/orders", params=params)
        assert page.status_code == 200, page.text
        seen += [o["order_id"] for o in page.json()["items"]]
        if page.json()["next_cursor"] is None:
            break
        params = {"material_code": "PT950", "limit": 2, "cursor": page.json()["next_cursor"]}
    assert seen == [a.json()["order_id"] for a in reversed(approved)]


def test_mes_filters_combine(customer: httpx.Client, seller: httpx.Client, operator: httpx.Client) -> None:
    order = approve(customer, seller, material_code="PD950", item_title="Unmistakable brooch")
    taken = operator.post(f"/orders/{order.json()['order_id']}/take")
    wait = {"min_position": taken.headers["X-Position"]}
    hits = operator.get(
        "/mes/orders",
        params={
            "status": "MANUFACTURING_STARTED",
            "operator_id": "olga",
            "material_code": "pd950",
            "channel": "shop",
            "q": "unmistakable",
            **wait,
        },
    )
    assert [o["order_id"] for o in hits.json()["items"]] == [order.json()["order_id"]]
    by_number = operator.get("/mes/orders", params={"q": order.json()["number"]}).json()["items"]
    assert [o["order_id"] for o in by_number] == [order.json()["order_id"]]
    none = operator.get("/mes/orders", params={"status": "CLOSED", "q": "unmistakable"}).json()
    assert none == {"items": [], "next_cursor": None}


def test_overdue_orders_are_found_and_counted(
    customer: httpx.Client, seller: httpx.Client, operator: httpx.Client
) -> None:
    yesterday = (date.today() - timedelta(days=1)).isoformat()
    order = approve(customer, seller, promised_date=yesterday)
    wait = {"min_position": order.headers["X-Position"]}
    overdue = operator.get("/mes/orders", params={"overdue": "true", **wait}).json()["items"]
    assert order.json()["order_id"] in {o["order_id"] for o in overdue}
    assert all(o["overdue"] for o in overdue)
    stats = operator.get("/mes/stats", params=wait).json()
    assert stats["overdue_total"] >= 1 and order.json()["order_id"] in {
        o["order_id"] for o in stats["overdue"]
    }
    assert stats["counts"]["MANUFACTURING_APPROVED"] >= 1
    assert stats["approved_wait_seconds"]["n"] >= 1


@pytest.mark.parametrize(
    "params",
    [
        {"status": "NOT_A_STATUS"},
        {"cursor": "garbage"},
        {"cursor": "WyJhcHByb3ZlZCIsIngiLCJ5Il0"},
        {"limit": 0},
        {"limit": 1000},
        {"q": "x" * 10_000},
        {"sort": "sideways"},
        {"overdue": "maybe"},
        {"min_position": -1},
    ],
)
def test_bad_mes_queries_are_400(operator: httpx.Client, params: dict[str, Any]) -> None:
    response = operator.get("/mes/orders", params=params)
    assert response.status_code == 400, response.text
    assert response.json()["error"] and response.json()["detail"]


@pytest.mark.parametrize("q", ["'; DROP TABLE mes.orders; --", "%", "_", "\\", "ring' OR '1'='1"])
def test_sql_metacharacters_are_just_text(operator: httpx.Client, q: str) -> None:
    response = operator.get("/mes/orders", params={"q": q})
    assert response.status_code == 200
    assert response.json()["items"] == []


def test_customers_cannot_read_the_mes(customer: httpx.Client) -> None:
    assert customer.get("/mes/orders").status_code == 403
    assert customer.get("/mes/stats").status_code == 403


def test_one_openapi_document_covers_both_apis(system: RunningApi) -> None:
    paths = httpx.get(f"{system.base_url}/schema/openapi.json").json()["paths"]
    assert {"/orders", "/mes/orders", "/shop/catalog", "/mes/stats"} <= set(paths)


TAGS = {"orders", "catalog", "shop", "mes", "webhooks", "operators", "operations"}
"""The sections of both APIs' documents, as the business names them."""


def test_every_operation_has_a_deliberate_name_and_a_tag(system: RunningApi) -> None:
    """A client generated from the document gets methods named as the business speaks (SubmitOrder,
    ListMesOrders), not derived from paths, grouped under the system's sections, never "default"."""
    paths = httpx.get(f"{system.base_url}/schema/openapi.json").json()["paths"]
    operations = [op for item in paths.values() for method, op in item.items() if method != "parameters"]
    names = [op.get("operationId", "") for op in operations]
    assert all(re.fullmatch(r"(?:[A-Z][a-z]+)+", name) for name in names), names
    assert len(names) == len(set(names))
    assert all(op.get("tags") and set(op["tags"]) <= TAGS for op in operations), [
        (op.get("operationId"), op.get("tags")) for op in operations
    ]
    assert {"InitiateOrder", "SubmitOrder", "CancelOrder", "SetMaterial", "ListMesOrders"} <= set(names)


def test_the_mes_stream_announces_changes_live(
    system: RunningApi, customer: httpx.Client, operator: httpx.Client
) -> None:
    token = operator.headers["Authorization"]
    with httpx.stream(
        "GET", f"{system.base_url}/mes/stream", headers={"Authorization": token}, timeout=20
    ) as s:
        lines = s.iter_lines()
        assert next(lines) == "event: ready"
        created = create(customer, item_title="Streamed pendant").json()
        for line in lines:
            if line.startswith("data: ") and created["order_id"] in line:
                assert '"status":"INITIATED"' in line
                break


def test_customers_cannot_open_the_mes_stream(system: RunningApi, customer: httpx.Client) -> None:
    assert customer.get("/mes/stream").status_code == 403


def test_mes_items_say_what_the_caller_may_do(
    customer: httpx.Client, seller: httpx.Client, operator: httpx.Client
) -> None:
    order = approve(customer, seller, material_code="AU585")
    items = operator.get(
        "/mes/orders", params={"material_code": "AU585", "min_position": order.headers["X-Position"]}
    )
    mine = next(i for i in items.json()["items"] if i["order_id"] == order.json()["order_id"])
    assert mine["allowed"] == ["StartManufacturing", "HoldOrder"]
    as_seller = seller.get("/mes/orders", params={"material_code": "AU585"}).json()["items"]
    assert next(i for i in as_seller if i["order_id"] == order.json()["order_id"])["allowed"] == [
        "HoldOrder",
        "CancelOrder",
    ]


def test_concurrent_changes_of_one_catalog_item_leave_the_shop_view_flowing(
    system: RunningApi, seller: httpx.Client, customer: httpx.Client
) -> None:
    """Several changes of the same material, labour rate and product land in one projection batch; the shop
    view applies them all (the last price wins) and goes on showing every order created afterwards."""
    material = {"name": "Sterling silver 925", "density_g_cm3": 10.4}
    rate = {"name": "Polishing", "unit": "per_piece", "amount_minor": 4000}
    product = {"title": "Silver band", "material_code": "AG925", "description": "plain band"}
    with ThreadPoolExecutor(6) as pool:
        for round_ in range(4):
            changes = [
                *(
                    ("/catalog/materials/AG925", {**material, "price_per_gram_minor": 170 + p})
                    for p in range(3)
                ),
                *(("/catalog/labour/POLISH", {**rate, "amount_minor": 4000 + p}) for p in range(2)),
                *(("/catalog/products/BAND-AG925", {**product, "price_minor": 9000 + p}) for p in range(2)),
            ]
            answers = list(pool.map(lambda change: seller.put(change[0], json=change[1]), changes))
            assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
            created = create(customer, item_title=f"After catalog round {round_}")
            seen = customer.get(
                f"/shop/orders/{created.json()['order_id']}",
                params={"min_position": created.headers["X-Position"]},
            )
            assert seen.status_code == 200, seen.text
    last = max(answers, key=lambda a: int(a.headers["X-Position"]))
    with system.anonymous() as anyone:
        shown = anyone.get("/shop/catalog", params={"min_position": last.headers["X-Position"]})
    assert shown.status_code == 200, shown.text
    with system.client("seller", "sam") as crm:
        catalog = crm.get("/catalog").json()
    assert {m["code"]: m["price_per_gram_minor"] for m in shown.json()["materials"]} == {
        m["code"]: m["price_per_gram_minor"] for m in catalog["materials"]
    }


def estimates(operator: httpx.Client, position: str) -> dict[str, dict[str, Any]]:
    answer = operator.get("/mes/manufacturing-estimates", params={"min_position": position})
    assert answer.status_code == 200, answer.text
    return {e["material_code"]: e for e in answer.json()["items"]}


def test_the_mes_lists_each_materials_manufacturing_estimate_and_its_completions(
    customer: httpx.Client, seller: httpx.Client, operator: httpx.Client
) -> None:
    material = {"name": "Palladium 500", "density_g_cm3": 11.0, "price_per_gram_minor": 3000}
    assert seller.put("/catalog/materials/PD500", json=material).status_code == 200
    order_id = approve(customer, seller, material_code="PD500").json()["order_id"]
    assert operator.post(f"/orders/{order_id}/take").status_code == 200
    done = operator.post(f"/orders/{order_id}/complete")
    assert done.status_code == 200, done.text
    measured = estimates(operator, done.headers["X-Position"])["PD500"]
    # one completion is far from enough to measure: the default two days
    assert measured == {
        "material_code": "PD500",
        "hours": 48.0,
        "seconds": 48 * 3600,
        "source": "default",
        "completions": 1,
        "measured_hours": None,
    }
    changed = seller.put("/catalog/materials/PD500", json={**material, "manufacturing_hours": 7.25})
    listed = estimates(operator, changed.headers["X-Position"])
    assert listed["PD500"] == {
        **measured,
        "hours": 7.25,
        "seconds": 7.25 * 3600,
        "source": "catalog",
    }
    assert {"AU750", "AG925"} <= set(listed)  # the catalog's materials, each with the estimate in use
    assert all(e["seconds"] == e["hours"] * 3600 > 0 for e in listed.values())


def test_customers_cannot_read_the_manufacturing_estimates(customer: httpx.Client) -> None:
    assert customer.get("/mes/manufacturing-estimates").status_code == 403


@pytest.mark.parametrize("params", [{"min_position": -1}, {"min_position": "x"}, {"min_position": 10**30}])
def test_bad_manufacturing_estimate_queries_are_4xx(operator: httpx.Client, params: dict[str, Any]) -> None:
    response = operator.get("/mes/manufacturing-estimates", params=params)
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"] and response.json()["detail"]
