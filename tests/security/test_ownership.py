"""Customers and partners see and change only their own orders, on every endpoint that touches one.

Someone else's order answers as docs/architecture.md and the code define it: the command API says 403
"this order belongs to someone else" (tests/e2e/test_bad_input.py holds that contract), the shop's read
model says 404 as if the order did not exist. Either way the answer tells nothing about the order (not
its status, number or what could be done to it), and the event store does not move. The MES is for staff:
customers, partners and services get 403 whatever they ask it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from orders_core.lifecycle import Role
from tests.conftest import RunningApi
from tests.journeys import NEW_ORDER, answered
from tests.meshes import cube_stl
from tests.security.servers import position

OWNER = (Role.CUSTOMER, "own-ann")
PARTNER_OWNER = (Role.PARTNER, "own-partner")
STRANGERS = [(Role.CUSTOMER, "own-bob"), (Role.PARTNER, "own-other-partner")]
COMMANDS: list[tuple[str, dict[str, Any] | None]] = [
    ("submit", None),
    ("approve", None),
    ("take", None),
    ("complete", None),
    ("package", None),
    ("ship", {"carrier": "DHL", "tracking_number": "JD0001"}),
    ("close", None),
    ("cancel", {"reason": "it is mine now"}),
]


@dataclass(frozen=True)
class Victim:
    """An order that belongs to someone, and what a stranger must not learn of it."""

    id: str
    status: str
    number: str
    owner: str
    role: Role

    def secrets(self) -> list[str]:
        return [self.status, self.number, self.owner]


@pytest.fixture(scope="module")
def staff(system: RunningApi) -> Iterator[dict[str, httpx.Client]]:
    with (
        system.client(Role.SELLER, "own-seller") as seller,
        system.client(Role.OPERATOR, "own-operator") as operator,
    ):
        yield {"seller": seller, "operator": operator}


def walk(client: httpx.Client, staff: dict[str, httpx.Client], steps: int) -> dict[str, Any]:
    """A new order of `client`'s caller, taken `steps` steps along the lifecycle."""
    created = client.post("/orders", json=NEW_ORDER)
    assert created.status_code == 201, created.text
    order_id = created.json()["order_id"]
    seller, operator = staff["seller"], staff["operator"]
    ship = {"carrier": "DHL", "tracking_number": "JD0002"}
    path = f"/orders/{order_id}"
    for step in range(steps):
        if step == 0:
            response = client.put(f"{path}/model", content=cube_stl(), headers={"Content-Type": "model/stl"})
        elif step == 1:
            response = client.post(f"{path}/submit")
        elif step == 2:
            assert answered(client, order_id)["status"] == "PRICE_CALCULATED"
            response = seller.post(f"{path}/approve")
        else:
            action = ("take", "complete", "package", "ship")[step - 3]
            response = operator.post(f"{path}/{action}", json=ship if action == "ship" else None)
        assert response.status_code == 200, response.text
    if steps == 2:
        assert answered(client, order_id)["status"] == "PRICE_CALCULATED"
    body: dict[str, Any] = client.get(path).json()
    return body


@pytest.fixture(scope="module")
def victims(system: RunningApi, staff: dict[str, httpx.Client]) -> list[Victim]:
    """The customer's orders at most steps of the lifecycle, and a partner's at its start."""
    found = []
    plan = [(OWNER, steps) for steps in (0, 1, 2, 3, 4, 6, 7)] + [(PARTNER_OWNER, 0), (PARTNER_OWNER, 1)]
    for (role, subject), steps in plan:
        with system.client(role, subject) as client:
            order = walk(client, staff, steps)
        found.append(Victim(order["order_id"], order["status"], order["number"], subject, role))
    statuses = {v.status for v in found}
    assert {"INITIATED", "FILE_UPLOADED", "PRICE_CALCULATED", "MANUFACTURING_STARTED", "SHIPPED"} <= statuses
    return found


@pytest.fixture(params=STRANGERS, ids=lambda s: f"{s[0]}-{s[1]}")
def stranger(request: pytest.FixtureRequest, system: RunningApi) -> Iterator[httpx.Client]:
    role, subject = request.param
    with system.client(role, subject) as client:
        yield client


@pytest.fixture
def still(system: RunningApi, victims: list[Victim]) -> Iterator[None]:
    """Fails the test if the event store moved while it ran (the victims exist before it starts)."""
    before = position(system)
    yield
    assert position(system) == before


def refused_without_a_trace(response: httpx.Response, status: int, victim: Victim) -> None:
    """`status`, an error in the system's shape, and nothing of the victim's order in it."""
    assert response.status_code == status, (victim, response.text)
    body = response.json()
    assert body["error"] and body["detail"], body
    assert not {"status", "allowed", "number", "owner_id"} & set(body), (victim, body)
    assert not [s for s in victim.secrets() if s in response.text], (victim, response.text)


@pytest.mark.usefixtures("still")
class TestCommandApi:
    def test_reading_someone_elses_order_or_history_is_403(
        self, stranger: httpx.Client, victims: list[Victim]
    ) -> None:
        for victim in victims:
            refused_without_a_trace(stranger.get(f"/orders/{victim.id}"), 403, victim)
            refused_without_a_trace(stranger.get(f"/orders/{victim.id}/history"), 403, victim)

    def test_uploading_a_model_to_someone_elses_order_is_403_and_stores_nothing(
        self, system: RunningApi, stranger: httpx.Client, victims: list[Victim]
    ) -> None:
        blobs = system.home / "blobs"
        before = sorted(blobs.rglob("*"))
        model = cube_stl(7.0)  # a model no order has, so a stored blob would show
        for victim in victims:
            response = stranger.put(
                f"/orders/{victim.id}/model", content=model, headers={"Content-Type": "model/stl"}
            )
            refused_without_a_trace(response, 403, victim)
        assert sorted(blobs.rglob("*")) == before

    @pytest.mark.parametrize(("action", "body"), COMMANDS, ids=[c[0] for c in COMMANDS])
    def test_every_command_on_someone_elses_order_is_403(
        self, stranger: httpx.Client, victims: list[Victim], action: str, body: dict[str, Any] | None
    ) -> None:
        for victim in victims:
            response = stranger.post(f"/orders/{victim.id}/{action}", json=body)
            refused_without_a_trace(response, 403, victim)
            assert response.json()["detail"] == "this order belongs to someone else"

    def test_an_order_cannot_be_created_for_someone_else(
        self, stranger: httpx.Client, victims: list[Victim]
    ) -> None:
        response = stranger.post("/orders", json={**NEW_ORDER, "owner_id": OWNER[1]})
        assert response.status_code == 403, response.text


def test_an_idempotency_key_is_per_caller(system: RunningApi) -> None:
    """Another caller's key never replays the first caller's order to them."""
    key = {"Idempotency-Key": "shared-key-1"}
    with system.client(*OWNER) as owner, system.client(*STRANGERS[0]) as stranger:
        first = owner.post("/orders", json=NEW_ORDER, headers=key)
        other = stranger.post("/orders", json=NEW_ORDER, headers=key)
    assert first.status_code == other.status_code == 201, (first.text, other.text)
    assert other.json()["order_id"] != first.json()["order_id"]
    assert other.json()["owner_id"] == STRANGERS[0][1]


@pytest.mark.usefixtures("still")
class TestShop:
    def test_someone_elses_order_is_not_found(
        self, system: RunningApi, stranger: httpx.Client, victims: list[Victim]
    ) -> None:
        wait = {"min_position": position(system)}  # so a 404 cannot be a view that is behind
        for victim in victims:
            refused_without_a_trace(stranger.get(f"/shop/orders/{victim.id}", params=wait), 404, victim)
            with system.client(victim.role, victim.owner) as owner:
                assert owner.get(f"/shop/orders/{victim.id}", params=wait).status_code == 200

    def test_someone_elses_preview_is_not_found_as_if_there_were_no_order(
        self, system: RunningApi, stranger: httpx.Client, victims: list[Victim]
    ) -> None:
        wait = {"min_position": position(system)}
        stranger.get("/shop/orders", params=wait)  # the view has every victim's order
        unknown = stranger.get("/shop/orders/00000000-0000-4000-8000-000000000000/preview")
        for victim in victims:
            answer = stranger.get(f"/shop/orders/{victim.id}/preview")
            refused_without_a_trace(answer, 404, victim)
            # worded as for an order that does not exist (not "no preview yet"): nothing to tell them apart
            assert answer.json()["detail"] == unknown.json()["detail"].replace(
                "00000000-0000-4000-8000-000000000000", str(victim.id)
            )

    def test_the_list_holds_only_the_callers_orders_whatever_owner_is_asked_for(
        self, system: RunningApi, stranger: httpx.Client, victims: list[Victim]
    ) -> None:
        wait = position(system)
        for asked in ({}, {"owner_id": OWNER[1]}, {"owner_id": PARTNER_OWNER[1]}):
            listed = stranger.get("/shop/orders", params={**asked, "limit": 200, "min_position": wait})
            assert listed.status_code == 200, listed.text
            ids = {o["order_id"] for o in listed.json()["items"]}
            assert not ids & {v.id for v in victims}, asked
        with system.client(*OWNER) as owner:
            mine = owner.get("/shop/orders", params={"limit": 200, "min_position": wait}).json()["items"]
        assert {v.id for v in victims if v.owner == OWNER[1]} <= {o["order_id"] for o in mine}


MES_GETS = [
    ("/mes/orders", {}),
    ("/mes/orders", {"status": "SHIPPED,INITIATED", "channel": "shop"}),
    ("/mes/orders", {"q": "A-1"}),
    ("/mes/stats", {}),
    ("/mes/manufacturing-estimates", {}),
]
OUTSIDERS = [*STRANGERS, OWNER, PARTNER_OWNER, (Role.SERVICE, "pricing")]


@pytest.mark.usefixtures("still")
@pytest.mark.parametrize("caller", OUTSIDERS, ids=lambda c: f"{c[0]}-{c[1]}")
class TestMes:
    @pytest.mark.parametrize(("path", "params"), MES_GETS)
    def test_the_mes_is_closed_to_them(
        self, system: RunningApi, caller: tuple[Role, str], path: str, params: dict[str, str]
    ) -> None:
        with system.client(*caller) as client:
            response = client.get(path, params=params)
        assert response.status_code == 403, response.text
        assert response.json()["error"] == "forbidden"
        assert "items" not in response.text and "counts" not in response.text

    def test_the_mes_preview_is_closed_to_them(
        self, system: RunningApi, caller: tuple[Role, str], victims: list[Victim]
    ) -> None:
        with system.client(*caller) as client:
            response = client.get(f"/mes/orders/{victims[0].id}/preview")
        assert response.status_code == 403, response.text
        assert response.json()["error"] == "forbidden"

    def test_the_mes_stream_is_closed_to_them(self, system: RunningApi, caller: tuple[Role, str]) -> None:
        with system.client(*caller) as client, client.stream("GET", "/mes/stream", timeout=5) as response:
            assert response.status_code == 403
            assert response.headers["content-type"].startswith("application/json")


@pytest.mark.parametrize("caller", [(Role.SELLER, "own-seller"), (Role.OPERATOR, "own-operator")])
def test_the_mes_is_open_to_staff(
    system: RunningApi, victims: list[Victim], caller: tuple[Role, str]
) -> None:
    """The control for the tests above: the same requests succeed for the roles the MES is for."""
    with system.client(*caller) as client:
        for path, params in MES_GETS:
            assert client.get(path, params=params).status_code == 200, path
        with client.stream("GET", "/mes/stream", timeout=5) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
