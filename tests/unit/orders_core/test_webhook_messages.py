"""What the sender sends and when (orders_core/webhook_messages.py): signatures that a Standard Webhooks
library written by others verifies, stable message ids, and the verdict after each attempt."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from orders_core.actors import Actor
from orders_core.lifecycle import Role
from orders_core.webhook_messages import (
    DISABLE_AFTER,
    JITTER,
    RETRY_SCHEDULE,
    Outcome,
    message_body,
    message_id,
    parse_schedule,
    signed_headers,
    verdict,
)
from orders_core.webhooks import EndpointSettings, PartnerWebhooks, WebhookEventType, new_signing_secret

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


@given(
    st.lists(st.sampled_from([None]), min_size=1, max_size=3),
    st.text(max_size=300),
    st.sampled_from(list(WebhookEventType)),
)
def test_every_secret_signs_and_the_standard_library_verifies(
    count: list[None], text: str, kind: WebhookEventType
) -> None:
    secrets = [new_signing_secret() for _ in count]
    body = message_body(kind, NOW.isoformat(), {"note": text})
    msg = message_id(uuid4(), str(uuid4()), 3)
    headers = signed_headers(secrets, msg, datetime.now(UTC), body)
    assert headers["webhook-signature"].count("v1,") == len(secrets)
    for secret in secrets:
        assert Webhook(secret).verify(body, headers) == {
            "type": kind.value,
            "timestamp": NOW.isoformat(),
            "data": {"note": text},
        }
    with pytest.raises(WebhookVerificationError):
        Webhook(new_signing_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secrets[0]).verify(body + " ", headers)


def test_a_message_id_is_stable_and_names_the_endpoint_the_order_and_its_version() -> None:
    endpoint, order = uuid4(), str(uuid4())
    first = message_id(endpoint, order, 4)
    assert first == message_id(endpoint, order, 4)
    assert first.startswith("msg_") and len(first) == 36
    assert len({first, message_id(endpoint, order, 5), message_id(uuid4(), order, 4)}) == 3


def test_a_2xx_is_delivered_and_a_410_gives_up_and_disables() -> None:
    for code in (200, 201, 204, 299):
        assert verdict(code, 1, NOW, None).outcome is Outcome.DELIVERED
    gone = verdict(410, 1, NOW, None)
    assert gone.outcome is Outcome.FAILED and gone.disable and "410" in gone.disable


@pytest.mark.parametrize("code", [None, 301, 400, 404, 408, 429, 500, 503])
def test_anything_else_is_retried_on_the_schedule_with_jitter(code: int | None) -> None:
    rand = random.Random(7)
    for attempt, wait in enumerate(RETRY_SCHEDULE, start=1):
        decided = verdict(code, attempt, NOW, NOW, rand=rand)
        assert decided.outcome is Outcome.RETRY and decided.disable is None
        assert decided.retry_at is not None
        waited = (decided.retry_at - NOW).total_seconds()
        assert wait.total_seconds() * (1 - JITTER) <= waited <= wait.total_seconds() * (1 + JITTER)
    spent = verdict(code, len(RETRY_SCHEDULE) + 1, NOW, NOW)
    assert spent.outcome is Outcome.FAILED and spent.disable is None


def test_the_schedule_retries_for_more_than_a_day() -> None:
    total = sum(RETRY_SCHEDULE, timedelta())
    assert total * (1 - JITTER) > timedelta(days=1)
    assert list(RETRY_SCHEDULE) == sorted(RETRY_SCHEDULE)


def test_an_endpoint_failing_for_days_is_disabled_saying_since_when() -> None:
    since = NOW - DISABLE_AFTER - timedelta(minutes=1)
    decided = verdict(500, 2, NOW, since)
    assert decided.outcome is Outcome.FAILED
    assert (
        decided.disable is not None
        and "5.0 days" in decided.disable
        and "since 2026-11-28" in decided.disable
    )
    assert verdict(500, 2, NOW, NOW - DISABLE_AFTER + timedelta(minutes=1)).outcome is Outcome.RETRY
    assert verdict(200, 2, NOW, since).outcome is Outcome.DELIVERED, "a 2xx is a 2xx however long it failed"


def test_a_schedule_setting_is_seconds_separated_by_commas() -> None:
    assert parse_schedule("0.5, 2,60") == (timedelta(seconds=0.5), timedelta(seconds=2), timedelta(minutes=1))
    for bad in ("", ",", "-1", "soon", "nan"):
        with pytest.raises(ValueError):
            parse_schedule(bad)


def test_the_sender_may_disable_an_endpoint_saying_why_and_enabling_clears_it() -> None:
    partner = Actor(Role.PARTNER, "acme")
    sender = Actor(Role.SERVICE, "webhook-sender")
    webhooks = PartnerWebhooks.start("acme", partner)
    endpoint_id = uuid4()
    settings = EndpointSettings("https://1.1.1.1/h", frozenset({WebhookEventType.SHIPPED}))
    assert webhooks.register(endpoint_id, settings, new_signing_secret(), partner) is None
    assert webhooks.disable_undeliverable(endpoint_id, "the endpoint answered 410 Gone", sender) is None
    assert webhooks.endpoints[endpoint_id].disabled_reason == "the endpoint answered 410 Gone"
    assert webhooks.enable(endpoint_id, partner) is None
    assert webhooks.endpoints[endpoint_id].disabled_reason is None
    assert webhooks.disable(endpoint_id, partner) is None
    assert webhooks.endpoints[endpoint_id].disabled_reason is None, "a partner's own switch needs no reason"
    assert webhooks.disable_undeliverable(uuid4(), "gone", sender) is not None
    assert webhooks.disable_undeliverable(endpoint_id, "", sender) is not None
    assert webhooks.disable_undeliverable(endpoint_id, "gone", partner) is not None
    # The service may disable as undeliverable, nothing else.
    assert webhooks.enable(endpoint_id, sender) is not None
    assert webhooks.disable(endpoint_id, sender) is not None
    assert webhooks.delete(endpoint_id, sender) is not None
