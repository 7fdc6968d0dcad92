"""Holds with reasons over HTTP (`backbone up`): a held order leaves the operators' queue, shows why and
since when, takes only a release or a cancellation, and its time on hold is counted apart."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import RunningApi
from tests.journeys import answered, submit
from tests.meshes import cube_stl


@pytest.fixture(scope="module")
def customer(system: RunningApi) -> Iterator[httpx.Client]:
    with system.client("customer", "hold-customer") as c:
        yield c


@pytest.fixture(scope="module")
def seller(system: RunningApi) -> Iterator[httpx.Client]:
    with system.client("seller", "hold-seller") as c:
        yield c


@pytest.fixture(scope="module")
def operator(system: RunningApi) -> Iterator[httpx.Client]:
    with system.client("operator", "hold-operator") as c:
        yield c


def approved(customer: httpx.Client, seller: httpx.Client) -> dict[str, Any]:
    order_id = submit(customer, cube_stl(6.0))
    assert answered(customer, order_id)["status"] == "PRICE_CALCULATED"
    done = seller.post(f"/orders/{order_id}/approve")
    assert done.status_code == 200, done.text
    body: dict[str, Any] = done.json()
    return body


def mes(client: httpx.Client, position: str, **params: Any) -> list[dict[str, Any]]:
    answer = client.get("/mes/orders", params={"min_position": position, "limit": 200, **params})
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def test_a_held_order_leaves_the_queue_says_why_and_comes_back_when_released(
    customer: httpx.Client, seller: httpx.Client, operator: httpx.Client
) -> None:
    order = approved(customer, seller)
    order_id = order["order_id"]
    held = operator.post(f"/orders/{order_id}/hold", json={"reason": "awaiting material: 2 mm sapphires"})
    assert held.status_code == 200, held.text
    body = held.json()
    assert (
        body["status"] == "MANUFACTURING_APPROVED"
        and body["hold_reason"] == "awaiting material: 2 mm sapphires"
    )
    assert body["held_since"] and set(body["allowed"]) <= {"ReleaseOrder", "CancelOrder"}

    refused = operator.post(f"/orders/{order_id}/take")
    assert refused.status_code == 409
    assert "on hold since" in refused.json()["detail"]
    assert refused.json()["hold_reason"] == "awaiting material: 2 mm sapphires"

    position = held.headers["X-Position"]
    queue = mes(operator, position, status="MANUFACTURING_APPROVED", held="false", sort="due")
    assert order_id not in {o["order_id"] for o in queue}
    (row,) = [o for o in mes(operator, position, held="true") if o["order_id"] == order_id]
    assert row["hold_reason"] == "awaiting material: 2 mm sapphires" and row["held_since"]
    assert set(row["allowed"]) == {"ReleaseOrder"}  # an operator may not cancel
    stats = operator.get("/mes/stats", params={"min_position": position}).json()
    assert stats["on_hold"].get("MANUFACTURING_APPROVED", 0) >= 1
    assert order_id in {o["order_id"] for o in stats["held"]}

    released = seller.post(f"/orders/{order_id}/release")
    assert released.status_code == 200, released.text
    assert released.json()["held_since"] is None and released.json()["hold_reason"] is None
    position = released.headers["X-Position"]
    queue = mes(operator, position, status="MANUFACTURING_APPROVED", held="false")
    assert order_id in {o["order_id"] for o in queue}
    assert operator.post(f"/orders/{order_id}/take").status_code == 200
    stats = operator.get(
        "/mes/stats", params={"min_position": operator.get(f"/orders/{order_id}").headers["X-Position"]}
    ).json()
    assert stats["approved_held_seconds"]["n"] >= 1 and stats["approved_held_seconds"]["max"] > 0


@pytest.mark.parametrize(
    ("reason", "why"),
    [("", "reason"), ("   ", "reason"), ("x" * 201, "reason"), (None, "reason")],
    ids=["empty", "blank", "too long", "missing"],
)
def test_a_hold_without_a_proper_reason_is_a_400_and_changes_nothing(
    customer: httpx.Client, seller: httpx.Client, reason: str | None, why: str
) -> None:
    order = approved(customer, seller)
    body = {} if reason is None else {"reason": reason}
    answer = seller.post(f"/orders/{order['order_id']}/hold", json=body)
    assert answer.status_code == 400, answer.text
    assert why in answer.text
    assert seller.get(f"/orders/{order['order_id']}").json()["held_since"] is None


def test_holds_are_for_staff_in_holdable_statuses_only(customer: httpx.Client, seller: httpx.Client) -> None:
    order = approved(customer, seller)
    forbidden = customer.post(f"/orders/{order['order_id']}/hold", json={"reason": "wait"})
    assert forbidden.status_code == 403
    created = customer.post(
        "/orders", json={"contact_name": "Ann", "item_title": "Ring", "material_code": "AU750", "quantity": 1}
    ).json()
    early = seller.post(f"/orders/{created['order_id']}/hold", json={"reason": "customer asked to wait"})
    assert early.status_code == 409
    assert early.json()["status"] == "INITIATED" and "CancelOrder" in early.json()["allowed"]
    not_held = seller.post(f"/orders/{order['order_id']}/release")
    assert not_held.status_code == 409 and "not on hold" in not_held.json()["detail"]
