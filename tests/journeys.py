"""An order's journey over HTTP, as the end-to-end tests walk it: create, upload, submit, wait for a price."""

from __future__ import annotations

import time
from typing import Any

import httpx

NEW_ORDER = {
    "contact_name": "Ann Example",
    "item_title": "Signet ring",
    "material_code": "AU750",
    "quantity": 1,
}


def submit(client: httpx.Client, model: bytes, **fields: Any) -> str:
    """Create an order with `fields`, upload `model` (binary STL) and submit it; returns the order id."""
    created = client.post("/orders", json={**NEW_ORDER, **fields})
    assert created.status_code == 201, created.text
    order_id: str = created.json()["order_id"]
    uploaded = client.put(f"/orders/{order_id}/model", content=model, headers={"Content-Type": "model/stl"})
    assert uploaded.status_code == 200, uploaded.text
    submitted = client.post(f"/orders/{order_id}/submit")
    assert submitted.status_code == 200, submitted.text
    return order_id


def answered(client: httpx.Client, order_id: str, seconds: float = 60) -> dict[str, Any]:
    """The order once the pricing service has answered its submission (priced or rejected)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        order: dict[str, Any] = client.get(f"/orders/{order_id}").json()
        if order["status"] != "SUBMITTED":
            return order
        time.sleep(0.05)
    raise AssertionError(f"order {order_id} got no pricing result within {seconds} s")
