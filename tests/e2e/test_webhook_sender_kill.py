"""The webhook sender killed mid-delivery loses nothing: `backbone api` and two `backbone webhooks`
processes (one active, one standby) on a real PostgreSQL; the active sender gets SIGKILL while deliveries
to a slow receiver are under way, and the standby delivers every message, each with its one webhook-id.

A message the receiver got but whose answer the killed sender never recorded is sent again: at least once,
as Standard Webhooks promises, and the receiver deduplicates on the id.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from uuid import uuid4

import psycopg
import pytest

from backbone.rabbitmq import free_port
from tests.conftest import (
    PostgresServer,
    RunningApi,
    serve,
    start_process,
    stop_process,
)
from tests.journeys import NEW_ORDER
from tests.webhook_receivers import start_receiver

ORDERS = 15


@pytest.fixture
def parts(postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApi]:
    """`backbone api` taking webhook endpoints on loopback; the senders are started beside it."""
    yield from serve(
        postgres,
        tmp_path_factory,
        "api",
        WEBHOOK_ALLOW_PRIVATE="1",
        WEBHOOK_RETRY_SCHEDULE="0.2,0.5,1,1,1,1,1,1",
    )


def active_sender(database: str) -> int | None:
    """The pid of the process whose session holds the delivery lock (its application_name says)."""
    with psycopg.connect(database) as conn:
        row = conn.execute(
            "SELECT a.application_name FROM pg_locks AS l JOIN pg_stat_activity AS a USING (pid) "
            "WHERE l.locktype = 'advisory' AND l.granted AND a.application_name LIKE 'webhook sender pid %'"
        ).fetchone()
    return int(str(row[0]).rsplit(" ", 1)[1]) if row else None


def delivered_in_store(database: str, count: int, seconds: float = 60) -> None:
    """Return once `count` messages are recorded delivered; the wait restarts whenever one more is."""
    seen, deadline = -1, time.monotonic() + seconds
    while time.monotonic() < deadline:
        with psycopg.connect(database) as conn:
            row = conn.execute("SELECT count(*) FROM webhooks.messages WHERE status = 'delivered'").fetchone()
        done = int(row[0]) if row else 0
        if done >= count:
            return
        if done != seen:
            seen, deadline = done, time.monotonic() + seconds
        time.sleep(0.1)
    raise AssertionError(f"{seen} of {count} messages delivered")


def test_a_sender_killed_mid_delivery_loses_nothing(parts: RunningApi) -> None:
    api, env = parts, parts.env
    receiver = start_receiver()
    slow = receiver.handle

    def handle_slowly(request):  # type: ignore[no-untyped-def]
        time.sleep(0.2)  # deliveries stay under way long enough to be cut
        return slow(request)

    receiver.server.clear()
    receiver.server.expect_request("/hook", method="POST").respond_with_handler(handle_slowly)
    senders: list[subprocess.Popen[bytes]] = []
    try:
        with api.client("partner", f"jeweller-{uuid4().hex[:6]}") as partner:
            answer = partner.post(
                "/webhooks", json={"url": receiver.url, "event_types": ["order.created", "order.cancelled"]}
            )
            assert answer.status_code == 201, answer.text
            receiver.secrets.append(answer.json()["secret"])
            orders = []
            for _ in range(ORDERS):
                order_id = partner.post("/orders", json=NEW_ORDER).json()["order_id"]
                assert partner.post(f"/orders/{order_id}/cancel", json={"reason": "test"}).status_code == 200
                orders.append(order_id)
            senders = [start_process(["webhooks"], env, free_port()) for _ in range(2)]
            receiver.wait_for(3)
            active = active_sender(api.database_url)
            assert active in {s.pid for s in senders}
            os.kill(active, signal.SIGKILL)
            survivor = next(s for s in senders if s.pid != active)
            delivered_in_store(api.database_url, 2 * ORDERS)
            assert survivor.poll() is None
            arrived = receiver.delivered()
            ids = {a.message_id for a in arrived}
            assert len(ids) == 2 * ORDERS, "every message arrived"
            for message in ids:
                bodies = {str(a.body) for a in arrived if a.message_id == message}
                assert len(bodies) == 1, "a message sent again is the same message"
            for order_id in orders:
                kinds = [a.body["type"] for a in arrived if a.body["data"]["order_id"] == order_id]
                first_seen = list(dict.fromkeys(kinds))
                assert first_seen == ["order.created", "order.cancelled"], f"{order_id} out of order: {kinds}"
            assert all(a.verified_with == (0,) for a in arrived)
    finally:
        for sender in senders:
            stop_process(sender)
        receiver.server.stop()
