"""The delivery loop's memory of an endpoint, on a real PostgreSQL and a real receiver: since when it has
been failing (cleared by a 2xx), and the endpoint disabled, saying why, once it has failed for longer than
the limit (here seconds, in production days)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from uuid import UUID, uuid4

import psycopg

from backbone.audit import audit
from backbone.database import eventsourcing_env
from backbone.migrate import migrate
from backbone.wiring import runner_for
from orders_core.actors import Actor
from orders_core.application import OrdersApplication
from orders_core.audit import Problem
from orders_core.lifecycle import Role
from orders_core.outcomes import Accepted
from orders_core.webhooks import EndpointSettings, WebhookEventType, new_signing_secret
from tests.conftest import PostgresServer
from tests.orders import initiate_command
from tests.webhook_receivers import start_receiver
from webhook_sender.delivery import DeliveryConfig, Sender
from webhook_sender.outbox import WebhookOutbox


def health(url: str, endpoint: UUID) -> tuple[object, object, object]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT failing_since, last_success_at, disabled_reason FROM webhooks.endpoints "
            "WHERE endpoint_id = %s",
            (endpoint,),
        ).fetchone()
    return (row[0], row[1], row[2]) if row else (None, None, None)


def test_an_endpoint_failing_past_the_limit_is_disabled_and_a_2xx_clears_failing(
    postgres: PostgresServer,
) -> None:
    url = postgres.create_database("webhook_sender")
    migrate(url)
    app = OrdersApplication(env=eventsourcing_env(url, pool_size=2))
    failing = [True]
    receiver = start_receiver(answer=lambda n: 500 if failing[0] else 200)
    partner = Actor(Role.PARTNER, "acme")
    endpoint = uuid4()
    settings = EndpointSettings(receiver.url, frozenset({WebhookEventType.ORDER_CREATED}))
    secret = new_signing_secret()
    receiver.secrets.append(secret)
    registered = app.change_webhooks(
        "r", "acme", lambda w: w.register(endpoint, settings, secret, partner), partner
    )
    assert isinstance(registered, Accepted)
    runner = runner_for(WebhookOutbox(app), url, "webhooks")
    config = DeliveryConfig(
        schedule=(timedelta(seconds=0.2),) * 50, disable_after=timedelta(seconds=2), allow_private=True
    )
    sender = Sender(url, app, config)

    def order() -> None:
        assert isinstance(app.initiate(initiate_command(partner), partner), Accepted)
        runner.catch_up()

    async def run_until(done: Callable[[], bool], seconds: float = 30) -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(sender.run(stop))
        for _ in range(int(seconds / 0.05)):
            if done():
                break
            await asyncio.sleep(0.05)
        stop.set()
        await task
        assert done()

    try:
        order()
        asyncio.run(run_until(lambda: len(receiver.arrivals) >= 2))
        since, _, _ = health(url, endpoint)
        assert since is not None, "a failed attempt marks the endpoint failing"
        failing[0] = False
        asyncio.run(run_until(lambda: len(receiver.delivered()) >= 1))
        since, last_success, _ = health(url, endpoint)
        assert since is None and last_success is not None, "a 2xx clears it"

        failing[0] = True
        order()
        asyncio.run(run_until(lambda: not app.webhooks("acme").endpoints[endpoint].enabled))  # type: ignore[union-attr]
        found = app.webhooks("acme").endpoints[endpoint]  # type: ignore[union-attr]
        assert found.disabled_reason is not None and "every attempt has failed since" in found.disabled_reason
        _, _, reason = health(url, endpoint)
        assert reason == found.disabled_reason
        with psycopg.connect(url) as conn:
            statuses = {row[0] for row in conn.execute("SELECT status FROM webhooks.messages")}
            last = conn.execute(
                "SELECT outcome, error FROM webhooks.attempts ORDER BY attempt_id DESC LIMIT 1"
            ).fetchone()
        assert statuses == {"delivered", "failed"}
        assert last is not None and last[0] == "failed" and "every attempt has failed" in str(last[1])
    finally:
        receiver.server.stop()
        runner.close()
        app.close()


def test_a_deleted_endpoints_messages_are_dropped_a_disabled_ones_failed_and_neither_is_a_finding(
    postgres: PostgresServer,
) -> None:
    """A partner who deletes an endpoint wants nothing more sent to it: its messages on their way are
    dropped. A disabled endpoint's are given up (failed: the partner may enable it and replay them). Neither
    is a finding of the audit: nothing was lost that the partner wanted."""
    url = postgres.create_database("webhook_dropped")
    migrate(url)
    app = OrdersApplication(env=eventsourcing_env(url, pool_size=2))
    receiver = start_receiver(answer=lambda n: 200)
    partner = Actor(Role.PARTNER, "acme")
    deleted, disabled = uuid4(), uuid4()
    settings = EndpointSettings(receiver.url, frozenset({WebhookEventType.ORDER_CREATED}))
    for endpoint in (deleted, disabled):
        registered = app.change_webhooks(
            "r", "acme", lambda w, e=endpoint: w.register(e, settings, new_signing_secret(), partner), partner
        )
        assert isinstance(registered, Accepted)
    runner = runner_for(WebhookOutbox(app), url, "webhooks")
    sender = Sender(url, app, DeliveryConfig(allow_private=True))
    try:
        assert isinstance(app.initiate(initiate_command(partner), partner), Accepted)
        runner.catch_up()
        assert isinstance(
            app.change_webhooks("d", "acme", lambda w: w.delete(deleted, partner), partner), Accepted
        )
        assert isinstance(
            app.change_webhooks("o", "acme", lambda w: w.disable(disabled, partner), partner), Accepted
        )

        def statuses() -> dict[UUID, str]:
            with psycopg.connect(url) as conn:
                return {
                    UUID(str(e)): str(s)
                    for e, s in conn.execute("SELECT endpoint_id, status FROM webhooks.messages")
                }

        async def run_until_settled() -> None:
            stop = asyncio.Event()
            task = asyncio.create_task(sender.run(stop))
            for _ in range(600):
                if "pending" not in statuses().values():
                    break
                await asyncio.sleep(0.05)
            stop.set()
            await task

        asyncio.run(run_until_settled())
        assert statuses() == {deleted: "dropped", disabled: "failed"}
        assert receiver.arrivals == [], "neither endpoint is posted to"
        report = audit(url, grace_s=3600, settle_s=0)
        assert [d for d in report.discrepancies if d.problem is Problem.UNDELIVERED_WEBHOOK] == []
    finally:
        receiver.server.stop()
        runner.close()
        app.close()
