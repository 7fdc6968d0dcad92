"""An order the MES view cannot apply, on the running system: parked while every other order flows, visible
where people look (the order's row, /health, `projections status`, the audit), retried after the fix.

The fault is real: a CHECK constraint on mes.orders that one order's cancellation breaks (as a migration
with a bug would), so the projector's own upsert fails with a constraint violation; dropping the
constraint is the fix that gets deployed.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import RunningApi

NEW_ORDER = {"contact_name": "Ann", "item_title": "Signet ring", "material_code": "AU750", "quantity": 1}


@pytest.fixture(scope="module")
def customer(system: RunningApi) -> Iterator[httpx.Client]:
    with system.client("customer", "ann") as client:
        yield client


@pytest.fixture(scope="module")
def operator(system: RunningApi) -> Iterator[httpx.Client]:
    with system.client("operator", "olga") as client:
        yield client


def create(customer: httpx.Client) -> tuple[str, int]:
    created = customer.post("/orders", json=NEW_ORDER)
    assert created.status_code == 201, created.text
    return created.json()["order_id"], int(created.headers["X-Position"])


def mes_row(operator: httpx.Client, order_id: str, position: int) -> dict[str, Any]:
    """The order's row in the MES list once the view has reached `position`."""
    found = operator.get("/mes/orders", params={"min_position": position, "limit": 200, "sort": "created"})
    assert found.status_code == 200, found.text
    rows = {item["order_id"]: item for item in found.json()["items"]}
    return rows[order_id]


def health(system: RunningApi) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{system.base_url}/health", timeout=10).json()
    return body


def wait_for(condition: Any, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_a_parked_order_is_shown_stale_and_unparked_by_a_retry_after_the_fix(
    system: RunningApi, customer: httpx.Client, operator: httpx.Client
) -> None:
    poisoned, _ = create(customer)
    with psycopg.connect(system.database_url, autocommit=True) as conn:
        conn.execute(
            "ALTER TABLE mes.orders ADD CONSTRAINT no_poison "
            "CHECK (cancellation_reason IS DISTINCT FROM 'poison') NOT VALID"
        )
    cancelled = customer.post(f"/orders/{poisoned}/cancel", json={"reason": "poison"})
    assert cancelled.status_code == 200, cancelled.text
    # Orders created afterwards reach the view: the poison parks one order, not the view.
    after = [create(customer) for _ in range(3)]
    for order_id, position in after:
        assert mes_row(operator, order_id, position)["status"] == "INITIATED"
    stale = mes_row(operator, poisoned, after[-1][1])
    assert stale["status"] == "INITIATED" and stale["parked_since"] is not None
    assert "no_poison" in stale["parked_reason"]

    wait_for(lambda: health(system)["projections"]["mes"]["state"] == "parked")
    seen = health(system)
    assert seen["status"] == "degraded" and seen["projections"]["mes"]["parked_aggregates"] == 1
    assert seen["projections"]["shop"]["state"] == "ok"
    assert httpx.get(f"{system.base_url}/health/ready", timeout=10).status_code == 200
    assert httpx.get(f"{system.base_url}/health/live", timeout=10).json() == {"status": "live"}

    listed = system.backbone("projections", "parked", "mes")
    assert listed.returncode == 0 and poisoned in listed.stdout and "OrderCancelled" in listed.stdout
    status = system.backbone("projections", "status")
    assert status.returncode == 0
    assert [line.split()[:2] for line in status.stdout.splitlines() if line.startswith("mes ")] == [
        ["mes", "parked"]
    ]
    audited = system.backbone("audit", "--settle", "0")
    assert audited.returncode == 1 and "parked" in audited.stdout and poisoned in audited.stdout

    still = system.backbone("projections", "retry", "mes", "--aggregate", poisoned)
    assert still.returncode == 1 and "still parked" in still.stdout, still.stdout + still.stderr

    with psycopg.connect(system.database_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE mes.orders DROP CONSTRAINT no_poison")  # the fix is deployed
    fixed = system.backbone("projections", "retry", "mes")
    assert fixed.returncode == 0 and f"{poisoned}  unparked" in fixed.stdout, fixed.stdout + fixed.stderr
    row = mes_row(operator, poisoned, after[-1][1])
    assert row["status"] == "CANCELLED" and row["parked_since"] is None and row["parked_reason"] is None
    wait_for(lambda: health(system)["status"] == "ok")
    assert system.backbone("projections", "parked", "mes").stdout.strip() == "mes: nothing parked"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("projections", "parked", "orders"), "invalid choice: 'orders'"),
        (("projections", "retry", "outbox"), "invalid choice: 'outbox'"),
        (("projections", "replay", "webhooks"), "invalid choice: 'webhooks'"),
        (("projections", "retry", "mes", "--aggregate", "not-an-id"), "is not an aggregate id"),
        (("projections", "retry", "shop", "--aggregate", str(uuid.uuid4())), "is not parked in shop"),
    ],
)
def test_projection_commands_answer_bad_input_with_a_reason_and_exit_2(
    system: RunningApi, args: tuple[str, ...], says: str
) -> None:
    answered = system.backbone(*args)
    assert answered.returncode == 2
    assert says in answered.stderr and "Traceback" not in answered.stderr


def test_backbone_without_a_command_prints_help_and_exits_2(system: RunningApi) -> None:
    answered = system.backbone()
    assert answered.returncode == 2 and "usage: backbone" in answered.stdout + answered.stderr
    assert "Traceback" not in answered.stderr
