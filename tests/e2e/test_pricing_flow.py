"""`backbone up` prices submitted orders by itself (the in-process broker stands in for RabbitMQ)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import RunningApi
from tests.journeys import answered, submit
from tests.meshes import cube_stl, open_box_stl


@pytest.fixture(scope="module")
def customer(system: RunningApi) -> Iterator[httpx.Client]:
    with system.client("customer", "pricing-customer") as c:
        yield c


def test_a_submitted_order_is_priced_from_its_model(customer: httpx.Client) -> None:
    order = answered(customer, submit(customer, cube_stl(10.0), quantity=2))
    assert order["status"] == "PRICE_CALCULATED"
    quote = order["quote"]
    assert quote["figures"]["volume_mm3"] == pytest.approx(1000.0)
    assert quote["figures"]["mass_g"] == pytest.approx(15.5)
    assert quote["figures"]["bbox_mm"] == [10.0, 10.0, 10.0]
    assert sum(line["amount_minor"] for line in quote["lines"]) == quote["total_minor"] > 0
    assert quote["quantity"] == 2 and quote["currency"] == "EUR"
    assert order["model"]["triangle_count"] == 12


def test_a_model_with_a_hole_is_rejected_with_a_reason(customer: httpx.Client) -> None:
    order = answered(customer, submit(customer, open_box_stl()))
    assert order["status"] == "REJECTED"
    assert "closed solid" in order["rejection_reason"] and "hole" in order["rejection_reason"]


def test_a_rejected_order_is_priced_after_a_new_model(customer: httpx.Client) -> None:
    order_id = submit(customer, open_box_stl())
    assert answered(customer, order_id)["status"] == "REJECTED"
    customer.put(f"/orders/{order_id}/model", content=cube_stl(8.0), headers={"Content-Type": "model/stl"})
    customer.post(f"/orders/{order_id}/submit")
    order = answered(customer, order_id)
    assert order["status"] == "PRICE_CALCULATED"
    assert order["quote"]["figures"]["volume_mm3"] == pytest.approx(512.0)


def test_a_model_larger_than_the_flask_is_rejected(customer: httpx.Client) -> None:
    order = answered(customer, submit(customer, cube_stl(120.0), material_code="AG925"))
    assert order["status"] == "REJECTED" and "flask" in order["rejection_reason"]
