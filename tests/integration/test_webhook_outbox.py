"""The webhook outbox and the sender's address check, on a real PostgreSQL.

The outbox is a fold like the views: the same events must give the same messages however the runner cuts
them into batches, whatever it forgot between them (a restart), and when a batch is applied twice (a crash
before its commit). The sender checks where a URL leads again at each delivery: a name that pointed at a
public address at registration and points at a private one now is refused, and nothing is sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backbone.database import eventsourcing_env
from backbone.migrate import migrate
from backbone.wiring import runner_for
from orders_core.actors import Actor
from orders_core.application import OrdersApplication
from orders_core.commands import CancelOrder
from orders_core.lifecycle import Role
from orders_core.outcomes import Accepted
from orders_core.webhook_messages import message_id
from orders_core.webhook_urls import IPAddress, literal_address
from orders_core.webhooks import EndpointSettings, WebhookEventType, new_signing_secret
from projectors.runner import changes_of
from tests.conftest import PostgresServer
from tests.orders import initiate_command
from webhook_sender.delivery import DeliveryConfig, Sender
from webhook_sender.outbox import WebhookOutbox

ACME, BOLT = Actor(Role.PARTNER, "acme"), Actor(Role.PARTNER, "bolt")
SHOPPER = Actor(Role.CUSTOMER, "carol")
CREATED_AND_CANCELLED = frozenset({WebhookEventType.ORDER_CREATED, WebhookEventType.CANCELLED})


@pytest.fixture(scope="module")
def store(
    postgres: PostgresServer,
) -> Iterator[tuple[str, OrdersApplication, set[tuple[str, str, str, int, str]]]]:
    """A store with orders of two partners and a shop customer, acme's two endpoints (one registered
    halfway), bolt's one (disabled), and the messages the rule says they should get."""
    url = postgres.create_database("webhook_outbox")
    migrate(url)
    app = OrdersApplication(env=eventsourcing_env(url, pool_size=2))
    early, late, off = uuid4(), uuid4(), uuid4()
    register(app, ACME, early, CREATED_AND_CANCELLED)
    register(app, BOLT, off, CREATED_AND_CANCELLED)
    assert isinstance(app.change_webhooks("d", "bolt", lambda w: w.disable(off, BOLT), BOLT), Accepted)
    expected: set[tuple[str, str, str, int, str]] = set()
    for round_ in range(2):
        for owner in (ACME, BOLT, SHOPPER, ACME):
            order = app.initiate(initiate_command(owner), owner)
            assert isinstance(order, Accepted)
            order_id = str(order.value.id)
            cancelled = app.execute(order.value.id, CancelOrder(reason="test"), owner)
            assert isinstance(cancelled, Accepted)
            if owner is ACME:
                for endpoint in [early] + ([late] if round_ == 1 else []):
                    expected.add(
                        (message_id(endpoint, order_id, 1), str(endpoint), order_id, 1, "order.created")
                    )
                    expected.add(
                        (message_id(endpoint, order_id, 2), str(endpoint), order_id, 2, "order.cancelled")
                    )
        if round_ == 0:
            register(app, ACME, late, CREATED_AND_CANCELLED)
    yield url, app, expected
    app.close()


def register(
    app: OrdersApplication, actor: Actor, endpoint_id: UUID, types: frozenset[WebhookEventType]
) -> None:
    settings_ = EndpointSettings("https://1.1.1.1/hook", types)
    secret = new_signing_secret()
    result = app.change_webhooks(
        "r", actor.subject, lambda w: w.register(endpoint_id, settings_, secret, actor), actor
    )
    assert isinstance(result, Accepted)


def reset(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE webhooks.messages, webhooks.attempts, webhooks.orders, webhooks.endpoints")
        conn.execute("DELETE FROM webhooks.tracking WHERE application_name <> '__migration__'")


def messages(url: str) -> set[tuple[str, str, str, int, str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT message_id, endpoint_id::text, order_id::text, order_version, event_type "
            "FROM webhooks.messages"
        ).fetchall()
    return {(str(a), str(b), str(c), int(str(d)), str(e)) for a, b, c, d, e in rows}


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.integers(min_value=1, max_value=40), forget_every=st.integers(min_value=1, max_value=5))
def test_the_same_events_give_the_same_messages_in_any_batches(
    store: tuple[str, OrdersApplication, set[tuple[str, str, str, int, str]]], batch: int, forget_every: int
) -> None:
    url, app, expected = store
    reset(url)
    outbox = WebhookOutbox(app)
    runner = runner_for(outbox, url, "webhooks", batch_size=batch)
    try:
        position, n = runner.position(), 0
        while True:
            notifications = runner.source.select_notifications(
                start=position, limit=batch, inclusive_of_start=False
            )
            if not notifications:
                break
            n += 1
            if n % forget_every == 0:
                outbox.forget()  # a restart: the cache of which orders are partners' is gone
            runner.apply_batch(notifications)
            position = notifications[-1].id
        assert messages(url) == expected
        bodies = {m[0] for m in messages(url)}
        assert len(bodies) == len(expected)
    finally:
        runner.close()


def test_a_batch_applied_twice_writes_each_message_once(
    store: tuple[str, OrdersApplication, set[tuple[str, str, str, int, str]]],
) -> None:
    url, app, expected = store
    reset(url)
    outbox = WebhookOutbox(app)
    runner = runner_for(outbox, url, "webhooks")
    try:
        notifications = runner.source.select_notifications(start=0, limit=10_000, inclusive_of_start=False)
        # As if the first commit's answer was lost: the same events folded again, in a transaction of its own.
        with runner.view.datastore.transaction(commit=True) as cursor:
            outbox.apply(cursor, "webhooks", changes_of(notifications)[0])
        outbox.forget()
        runner.apply_batch(notifications)
        assert messages(url) == expected
    finally:
        runner.close()


def test_a_name_that_now_leads_to_a_private_address_is_refused_at_delivery(
    store: tuple[str, OrdersApplication, set[tuple[str, str, str, int, str]]],
) -> None:
    url, app, _ = store
    reset(url)
    partner = Actor(Role.PARTNER, f"rebind-{uuid4().hex[:6]}")
    endpoint = uuid4()
    settings_ = EndpointSettings(
        "https://hooks.rebind.example/in", frozenset({WebhookEventType.ORDER_CREATED})
    )
    secret = new_signing_secret()
    assert isinstance(
        app.change_webhooks(
            "r", partner.subject, lambda w: w.register(endpoint, settings_, secret, partner), partner
        ),
        Accepted,
    )
    assert isinstance(app.initiate(initiate_command(partner), partner), Accepted)
    runner = runner_for(WebhookOutbox(app), url, "webhooks")
    runner.catch_up()
    runner.close()

    async def rebound(host: str, port: int) -> list[IPAddress] | str:
        address = literal_address("127.0.0.1")
        assert address is not None
        return [address]

    config = DeliveryConfig(schedule=(timedelta(hours=1),), allow_private=False)
    sender = Sender(url, app, config, rebound)

    async def deliver_until_attempted() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(sender.run(stop))
        for _ in range(200):
            if attempts(url, endpoint):
                break
            await asyncio.sleep(0.05)
        stop.set()
        await task

    asyncio.run(deliver_until_attempted())
    [(status_code, error, outcome)] = attempts(url, endpoint)
    assert status_code is None and outcome == "retry"
    assert "resolves to 127.0.0.1 (loopback)" in error


def attempts(url: str, endpoint: UUID) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT status_code, error, outcome FROM webhooks.attempts WHERE endpoint_id = %s", (endpoint,)
        ).fetchall()
