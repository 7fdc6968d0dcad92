"""Take-next and operator profiles over HTTP (`backbone up`)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import httpx
import pytest

from tests.conftest import RunningApi
from tests.journeys import answered, submit
from tests.meshes import cube_stl


@pytest.fixture(scope="module")
def customer(system: RunningApi) -> Iterator[httpx.Client]:
    with system.client("customer", "next-customer") as c:
        yield c


@pytest.fixture(scope="module")
def seller(system: RunningApi) -> Iterator[httpx.Client]:
    with system.client("seller", "next-seller") as c:
        yield c


def approved(customer: httpx.Client, seller: httpx.Client, material: str, days: int) -> dict[str, Any]:
    promised = str(date.today() + timedelta(days=days))
    order_id = submit(customer, cube_stl(6.0), material_code=material, promised_date=promised)
    assert answered(customer, order_id)["status"] == "PRICE_CALCULATED"
    done = seller.post(f"/orders/{order_id}/approve")
    assert done.status_code == 200, done.text
    body: dict[str, Any] = done.json()
    return body


def test_an_operator_takes_their_materials_earliest_promised_first_then_hears_nothing_waits(
    system: RunningApi, customer: httpx.Client, seller: httpx.Client
) -> None:
    later = approved(customer, seller, "PD950", 8)
    sooner = approved(customer, seller, "PD950", 3)
    approved(customer, seller, "AU585", 1)  # sooner still, but not hers
    with system.client("operator", "pia") as pia:
        declared = pia.put("/operators/pia/materials", json={"materials": ["pd950"]})
        assert declared.status_code == 200, declared.text
        assert declared.json()["materials"] == ["PD950"]
        assert pia.get("/operators/pia").json()["materials"] == ["PD950"]
        position = declared.headers["X-Position"]
        seller.get("/mes/orders", params={"min_position": position})  # the view has the orders
        first = pia.post("/orders/take-next")
        assert first.status_code == 200, first.text
        assert first.json()["order_id"] == sooner["order_id"]
        assert first.json()["status"] == "MANUFACTURING_STARTED" and first.json()["operator_id"] == "pia"
        second = pia.post("/orders/take-next")
        assert second.status_code == 200 and second.json()["order_id"] == later["order_id"]
        empty = pia.post("/orders/take-next")
        assert empty.status_code == 204 and empty.content == b""


@pytest.mark.parametrize("role", ["customer", "seller", "partner", "admin"])
def test_take_next_is_for_operators(system: RunningApi, role: str) -> None:
    with system.client(role, f"not-an-operator-{role}") as client:
        answer = client.post("/orders/take-next")
    assert answer.status_code == 403, answer.text
    assert answer.json()["error"] == "forbidden"


def test_profiles_are_the_operators_own_and_name_real_materials(system: RunningApi) -> None:
    with system.client("operator", "omar") as omar, system.client("operator", "otto") as otto:
        assert otto.put("/operators/omar/materials", json={"materials": ["AU750"]}).status_code == 403
        unknown = omar.put("/operators/omar/materials", json={"materials": ["AU750", "XX999"]})
        assert unknown.status_code == 422 and "XX999" in unknown.json()["detail"]
        for bad in ({"materials": "AU750"}, {"materials": ["a" * 40]}, {}, {"materials": ["AU750"] * 33}):
            answer = omar.put("/operators/omar/materials", json=bad)
            assert answer.status_code == 400, (bad, answer.text)
        assert omar.get("/operators/omar").json() == {
            "operator_id": "omar",
            "materials": [],
            "work_centres": [],
            "works": None,
            "version": 0,
        }
        assert otto.get("/operators/omar").status_code == 403
    with system.client("seller", "sue") as sue, system.client("customer", "cid") as cid:
        assert sue.get("/operators/omar").status_code == 200
        assert cid.get("/operators/omar").status_code == 403


def test_an_operator_of_a_work_centre_takes_the_materials_made_there_as_the_catalog_says_now(
    system: RunningApi, customer: httpx.Client, seller: httpx.Client
) -> None:
    catalog = seller.get("/catalog").json()
    palladium = next(m for m in catalog["materials"] if m["code"] == "PD950")
    fields = {k: v for k, v in palladium.items() if k != "code"}

    def place(work_centre: str | None) -> str:
        moved = seller.put("/catalog/materials/PD950", json={**fields, "work_centre": work_centre})
        assert moved.status_code == 200, moved.text
        return str(moved.headers["X-Position"])

    bad = seller.put("/catalog/materials/PD950", json={**fields, "work_centre": "bench pd"})
    assert bad.status_code == 400 and "work_centre" in bad.text, bad.text
    place("bench-pd")
    try:
        stored = next(m for m in seller.get("/catalog").json()["materials"] if m["code"] == "PD950")
        assert stored["work_centre"] == "BENCH-PD"
        waiting = approved(customer, seller, "PD950", 2)
        approved(customer, seller, "AU585", 1)  # sooner, not made at her bench
        with system.client("operator", "wendy") as wendy:
            unknown = wendy.put("/operators/wendy/work-centres", json={"work_centres": ["BENCH-XX"]})
            assert unknown.status_code == 422 and "BENCH-XX" in unknown.json()["detail"]
            for bad in ({"work_centres": "BENCH-PD"}, {}, {"work_centres": ["bench pd"]}):
                assert wendy.put("/operators/wendy/work-centres", json=bad).status_code == 400, bad
            declared = wendy.put("/operators/wendy/work-centres", json={"work_centres": ["bench-pd"]})
            assert declared.status_code == 200, declared.text
            profile = {
                "operator_id": "wendy",
                "materials": [],
                "work_centres": ["BENCH-PD"],
                "works": ["PD950"],
            }
            assert declared.json() == {**profile, "version": 2}
            assert wendy.get("/operators/wendy").json() == {**profile, "version": 2}
            seller.get("/mes/orders", params={"min_position": declared.headers["X-Position"]})
            taken = wendy.post("/orders/take-next")
            assert taken.status_code == 200, taken.text
            assert taken.json()["material_code"] == "PD950"
            if taken.json()["order_id"] != waiting["order_id"]:  # an earlier test's palladium, sooner
                assert str(taken.json()["promised_date"]) <= str(waiting["promised_date"])
            place(None)  # the bench makes nothing now: she works nothing, not everything
            assert wendy.get("/operators/wendy").json()["works"] == []
            assert wendy.post("/orders/take-next").status_code == 204
    finally:
        place(palladium.get("work_centre"))
