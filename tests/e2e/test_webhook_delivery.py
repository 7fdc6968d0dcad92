"""Webhooks delivered for real: `backbone up` (its sender in-process) POSTs partners' order events to
receivers on loopback (pytest-httpserver), which verify every message with the `standardwebhooks` package.

Each test registers endpoints of a partner of its own, so tests share the system without sharing messages.
Retries are short here (WEBHOOK_RETRY_SCHEDULE), so a receiver that fails for a while is retried within
seconds; the schedule's shape is the production one's, tested in tests/unit/orders_core.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest

from backbone.migrate import migrate
from tests.conftest import PostgresServer, RunningApi, logged
from tests.journeys import NEW_ORDER, answered
from tests.meshes import cube_stl
from tests.webhook_receivers import Receiver, start_receiver

ALL_TYPES = [
    "order.created", "order.model_rejected", "order.price_calculated", "order.approved",
    "order.manufacturing_started", "order.manufacturing_completed", "order.shipped", "order.closed",
    "order.cancelled",
]  # fmt: skip
WALK = [
    "order.created", "order.price_calculated", "order.approved", "order.manufacturing_started",
    "order.manufacturing_completed", "order.shipped", "order.closed",
]  # fmt: skip
"""What a partner's endpoint subscribed to everything hears of an order walked from start to close."""
RETRIES = "0.2,0.3,0.5,0.8,1,1,1,1,1,1"


SECRETS_SHOWN: set[str] = set()
"""Every secret the API showed this module's tests: none may be in any line the system logged."""


@pytest.fixture(scope="module")
def log_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs") / "up.log"


@pytest.fixture(scope="module")
def system(
    postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory, log_file: Path
) -> Iterator[RunningApi]:
    url = postgres.create_database("webhook_delivery")
    migrate(url)
    # At DEBUG: everything the sender and the API say, a secret included if they said one.
    with logged(
        "up",
        url,
        tmp_path_factory.mktemp("home"),
        log_file,
        seconds=60,
        WEBHOOK_ALLOW_PRIVATE="1",
        WEBHOOK_RETRY_SCHEDULE=RETRIES,
        WEBHOOK_ATTEMPT_SECONDS="3",
    ) as running:
        yield running


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = start_receiver()
    try:
        yield found
    finally:
        found.server.stop()


def register(partner: httpx.Client, receiver: Receiver, types: list[str] | None = None) -> dict[str, Any]:
    answer = partner.post("/webhooks", json={"url": receiver.url, "event_types": types or ALL_TYPES})
    assert answer.status_code == 201, answer.text
    endpoint: dict[str, Any] = answer.json()
    receiver.secrets.append(endpoint["secret"])
    SECRETS_SHOWN.add(endpoint["secret"])
    return endpoint


def attempts_logged(partner: httpx.Client, endpoint_id: str, count: int) -> list[dict[str, Any]]:
    """The endpoint's delivery log once it holds `count` attempts: the sender records an attempt after the
    receiver answered it, so the last one may be a moment behind the receiver."""
    for _ in range(300):
        items: list[dict[str, Any]] = partner.get(
            f"/webhooks/{endpoint_id}/attempts", params={"limit": 100}
        ).json()["items"]
        if len(items) >= count:
            return items
        time.sleep(0.1)
    raise AssertionError(f"the delivery log shows {len(items)} of {count} attempts")


def created(partner: httpx.Client) -> str:
    answer = partner.post("/orders", json=NEW_ORDER)
    assert answer.status_code == 201, answer.text
    order_id: str = answer.json()["order_id"]
    return order_id


def priced(partner: httpx.Client, order_id: str) -> None:
    stl = {"Content-Type": "model/stl"}
    uploaded = partner.put(f"/orders/{order_id}/model", content=cube_stl(), headers=stl)
    assert uploaded.status_code == 200, uploaded.text
    assert partner.post(f"/orders/{order_id}/submit").status_code == 200
    assert answered(partner, order_id)["status"] == "PRICE_CALCULATED"


def walked(system: RunningApi, partner: httpx.Client, order_id: str) -> None:
    """From priced to closed, each step by whoever takes it."""
    with system.client("seller", "sam") as seller, system.client("operator", "op-1") as operator:
        steps = [
            (seller, "approve", None),
            (operator, "take", None),
            (operator, "complete", None),
            (operator, "package", None),
            (operator, "ship", {"carrier": "DHL", "tracking_number": "JD01460000"}),
            (seller, "close", None),
        ]
        for client, command, body in steps:
            answer = client.post(f"/orders/{order_id}/{command}", json=body)
            assert answer.status_code == 200, (command, answer.text)


def test_every_step_of_a_partners_order_arrives_signed_and_in_order(
    system: RunningApi, receiver: Receiver
) -> None:
    partner_id = f"jeweller-{uuid4().hex[:6]}"
    with system.client("partner", partner_id) as partner:
        endpoint = register(partner, receiver)
        order_id = created(partner)
        priced(partner, order_id)
        walked(system, partner, order_id)
        arrived = receiver.wait_for(len(WALK))
        assert [a.body["type"] for a in arrived] == WALK
        assert all(a.verified_with == (0,) for a in arrived), "every message verifies with the secret"
        assert len({a.message_id for a in arrived}) == len(WALK)
        assert all(a.message_id.startswith("msg_") for a in arrived)
        versions = [a.body["data"]["version"] for a in arrived]
        assert versions == sorted(versions)
        shipped = next(a for a in arrived if a.body["type"] == "order.shipped")
        assert shipped.body["data"]["carrier"] == "DHL"
        assert shipped.body["data"]["tracking_number"] == "JD01460000"
        assert shipped.body["data"]["status"] == "SHIPPED"
        assert {a.body["data"]["order_id"] for a in arrived} == {order_id}
        assert all(a.body["data"]["owner_id"] == partner_id for a in arrived)
        # The delivery log says the same.
        attempts = attempts_logged(partner, endpoint["endpoint_id"], len(WALK))
        assert [a["status_code"] for a in attempts] == [200] * len(WALK)
        assert {a["outcome"] for a in attempts} == {"delivered"}
        messages = partner.get(f"/webhooks/{endpoint['endpoint_id']}/messages").json()["items"]
        assert {m["message_id"] for m in messages} == {a.message_id for a in arrived}
        assert {m["status"] for m in messages} == {"delivered"}


def test_only_subscribed_types_of_the_partners_own_orders_arrive(
    system: RunningApi, receiver: Receiver
) -> None:
    mine, other = f"jeweller-{uuid4().hex[:6]}", f"jeweller-{uuid4().hex[:6]}"
    with system.client("partner", mine) as partner, system.client("partner", other) as stranger:
        endpoint = register(partner, receiver, ["order.cancelled"])
        kept, cancelled = created(partner), created(partner)
        cancel = partner.post(f"/orders/{cancelled}/cancel", json={"reason": "changed my mind"})
        assert cancel.status_code == 200
        theirs = created(stranger)
        assert stranger.post(f"/orders/{theirs}/cancel", json={"reason": "no"}).status_code == 200
        # A last cancellation of ours: the outbox meets events in the store's order, so once its message
        # exists every event above has been judged, and the endpoint's messages are all it will get.
        last = created(partner)
        assert partner.post(f"/orders/{last}/cancel", json={"reason": "sentinel"}).status_code == 200
        arrived = receiver.wait_for(2)
        messages = partner.get(f"/webhooks/{endpoint['endpoint_id']}/messages").json()["items"]
        assert sorted((m["event_type"], m["order_id"]) for m in messages) == sorted(
            [("order.cancelled", cancelled), ("order.cancelled", last)]
        )
        assert {a.body["data"]["order_id"] for a in arrived} == {cancelled, last}
        assert kept not in {a.body["data"]["order_id"] for a in arrived}


def test_a_receiver_that_fails_for_a_while_gets_every_message_once_in_order(system: RunningApi) -> None:
    receiver = start_receiver(answer=lambda n: 500 if n < 12 else 200)
    try:
        with system.client("partner", f"jeweller-{uuid4().hex[:6]}") as partner:
            endpoint = register(partner, receiver)
            orders = [created(partner) for _ in range(3)]
            for order_id in orders:
                priced(partner, order_id)
            for order_id in orders:
                walked(system, partner, order_id)
            receiver.wait_for(3 * len(WALK))
            log = attempts_logged(partner, endpoint["endpoint_id"], 12 + 3 * len(WALK))
            arrived = receiver.delivered()  # every attempt is recorded: nothing more is on its way
            assert len(arrived) == 3 * len(WALK), "each message is answered 2xx exactly once"
            assert len({a.message_id for a in arrived}) == len(arrived)
            for order_id in orders:
                mine = [a.body for a in arrived if a.body["data"]["order_id"] == order_id]
                assert [m["type"] for m in mine] == WALK, f"the messages of {order_id} arrived out of order"
            failed = [a for a in receiver.arrivals if a.answered == 500]
            assert len(failed) == 12
            assert all(a.verified_with == (0,) for a in receiver.arrivals)
            codes = [a["status_code"] for a in log]
            assert codes.count(500) == 12 and codes.count(200) == 3 * len(WALK)
            retried = [a for a in log if a["status_code"] == 500]
            assert all(a["outcome"] == "retry" and a["next_attempt_at"] for a in retried)
            assert all(a["error"] == "answered 500" for a in retried)
    finally:
        receiver.server.stop()


def test_during_a_rotation_both_secrets_verify_and_after_it_only_the_new(
    system: RunningApi, receiver: Receiver
) -> None:
    with system.client("partner", f"jeweller-{uuid4().hex[:6]}") as partner:
        endpoint = register(partner, receiver, ["order.created"])
        path = f"/webhooks/{endpoint['endpoint_id']}/rotate-secret"
        rotated = partner.post(path, json={"overlap_seconds": 3600})
        assert rotated.status_code == 200, rotated.text
        receiver.secrets.append(rotated.json()["secret"])
        SECRETS_SHOWN.add(rotated.json()["secret"])
        created(partner)
        assert receiver.wait_for(1)[0].verified_with == (0, 1)
        leaked = partner.post(path, json={"overlap_seconds": 0})
        receiver.secrets.append(leaked.json()["secret"])
        SECRETS_SHOWN.add(leaked.json()["secret"])
        created(partner)
        last = receiver.wait_for(2)[1]
        assert last.verified_with == (2,), "only the newest secret signs after an overlap of 0"


def test_a_410_disables_the_endpoint_and_says_why(system: RunningApi) -> None:
    receiver = start_receiver(answer=lambda n: 410)
    try:
        with system.client("partner", f"jeweller-{uuid4().hex[:6]}") as partner:
            endpoint = register(partner, receiver, ["order.created"])
            created(partner)
            path = f"/webhooks/{endpoint['endpoint_id']}"
            deadline = time.monotonic() + 30
            while partner.get(path).json()["enabled"] and time.monotonic() < deadline:
                time.sleep(0.1)
            seen = partner.get(path).json()
            assert not seen["enabled"]
            assert "410" in seen["disabled_reason"]
            attempts = partner.get(f"{path}/attempts").json()["items"]
            assert [(a["status_code"], a["outcome"]) for a in attempts] == [(410, "failed")]
            assert len(receiver.arrivals) == 1, "a 410 is not retried"
            # Replaying to a disabled endpoint is refused until it is enabled again.
            replay = partner.post(f"{path}/replay", json={"since": "2020-01-01T00:00:00Z"})
            assert replay.status_code == 409 and "enable" in replay.json()["detail"]
    finally:
        receiver.server.stop()


def test_replay_sends_the_same_message_again(system: RunningApi, receiver: Receiver) -> None:
    with system.client("partner", f"jeweller-{uuid4().hex[:6]}") as partner:
        endpoint = register(partner, receiver, ["order.created", "order.cancelled"])
        order_id = created(partner)
        assert partner.post(f"/orders/{order_id}/cancel", json={"reason": "test"}).status_code == 200
        first = receiver.wait_for(2)
        path = f"/webhooks/{endpoint['endpoint_id']}"
        one = partner.post(f"{path}/messages/{first[0].message_id}/replay")
        assert one.status_code == 202 and one.json() == {"replayed": 1}
        again = receiver.wait_for(3)[2]
        assert again.message_id == first[0].message_id and again.body == first[0].body
        assert again.verified_with == (0,)
        # The receiver has it before the sender has recorded its answer; a message on its way is not
        # replayed (it is coming anyway), so wait until both are recorded delivered.
        attempts_logged(partner, endpoint["endpoint_id"], 3)
        since = partner.post(f"{path}/replay", json={"since": "2020-01-01T00:00:00Z"})
        assert since.status_code == 202 and since.json() == {"replayed": 2}
        later = receiver.wait_for(5)[3:]
        assert [a.message_id for a in later] == [a.message_id for a in first], "replayed in order"
        missing = partner.post(f"{path}/messages/msg_{'0' * 32}/replay")
        assert missing.status_code == 404


def test_a_partner_cannot_read_or_replay_another_partners_log(system: RunningApi, receiver: Receiver) -> None:
    with (
        system.client("partner", f"jeweller-{uuid4().hex[:6]}") as owner,
        system.client("partner", f"jeweller-{uuid4().hex[:6]}") as stranger,
        system.client("seller", "sam") as seller,
    ):
        endpoint = register(owner, receiver, ["order.created"])
        created(owner)
        message = receiver.wait_for(1)[0].message_id
        path = f"/webhooks/{endpoint['endpoint_id']}"
        for answer in (
            stranger.get(f"{path}/attempts"),
            stranger.get(f"{path}/messages"),
            stranger.post(f"{path}/messages/{message}/replay"),
            stranger.post(f"{path}/replay", json={"since": "2020-01-01T00:00:00Z"}),
        ):
            assert answer.status_code == 404, answer.text
        assert seller.get(f"{path}/attempts").status_code == 403


def test_bad_log_queries_are_400s_with_a_reason(system: RunningApi, receiver: Receiver) -> None:
    with system.client("partner", f"jeweller-{uuid4().hex[:6]}") as partner:
        endpoint = register(partner, receiver, ["order.created"])
        path = f"/webhooks/{endpoint['endpoint_id']}"
        for answer in (
            partner.get(f"{path}/attempts", params={"cursor": "not-a-cursor"}),
            partner.get(f"{path}/messages", params={"cursor": "WzFd"}),
            partner.get(f"{path}/messages", params={"status": "lost"}),
            partner.get(f"{path}/attempts", params={"limit": 0}),
            partner.post(f"{path}/replay", json={"since": "yesterday"}),
            partner.post(f"{path}/replay", json={"since": "2026-01-01T00:00:00"}),
            partner.post(f"{path}/replay", json={}),
            partner.post(f"{path}/messages/not-a-message/replay"),
        ):
            assert (400 <= answer.status_code < 500 and answer.status_code != 404) or "not-a-message" in str(
                answer.url
            ), answer.text
            assert answer.json().get("detail"), answer.text


def test_deliveries_show_in_the_metrics_and_health(system: RunningApi, receiver: Receiver) -> None:
    with system.client("partner", f"jeweller-{uuid4().hex[:6]}") as partner:
        register(partner, receiver, ["order.created"])
        created(partner)
        receiver.wait_for(1)
    metrics = httpx.get(f"{system.base_url}/metrics").text
    values = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("backbone_webhook")
    }
    assert values['backbone_webhook_deliveries_total{outcome="delivered"}'] >= 1
    assert values['backbone_webhook_attempts_total{result="2xx"}'] >= 1
    assert values["backbone_webhook_sender_active"] == 1
    assert values["backbone_webhook_delivery_seconds_count"] >= 1
    health = httpx.get(f"{system.base_url}/health").json()
    assert health["projections"]["webhooks"]["state"] in ("ok", "parked")


def test_no_secret_is_in_any_line_the_sender_or_the_api_logged(system: RunningApi, log_file: Path) -> None:
    """Last in the module: the secrets of every endpoint above, looked for in everything `backbone up`
    printed at DEBUG while it delivered their messages."""
    assert len(SECRETS_SHOWN) >= 8
    logged = log_file.read_text(errors="replace")
    assert '"webhook attempt"' in logged, "the sender's lines are in the log"
    for secret in SECRETS_SHOWN:
        assert secret not in logged
        assert secret.removeprefix("whsec_") not in logged
