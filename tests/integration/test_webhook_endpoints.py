"""Webhook endpoints in the real event store: what is stored comes back the same, secrets included, and two
replicas changing one partner's endpoints at once both succeed."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

from orders_core.actors import Actor
from orders_core.application import OrdersApplication
from orders_core.lifecycle import Role
from orders_core.outcomes import Accepted, Refusal, Refused
from orders_core.webhooks import (
    EndpointSettings,
    PartnerWebhooks,
    WebhookEventType,
    new_signing_secret,
    signing_secrets,
)

PARTNER = Actor(Role.PARTNER, "acme")
SETTINGS = EndpointSettings(
    url="https://hooks.acme.example/alexandrite", event_types=frozenset({WebhookEventType.SHIPPED})
)


def register(app: OrdersApplication, partner: str = "acme") -> Accepted[PartnerWebhooks]:
    actor = Actor(Role.PARTNER, partner)
    endpoint_id = uuid4()
    result = app.change_webhooks(
        "RegisterWebhookEndpoint",
        partner,
        lambda w: w.register(endpoint_id, SETTINGS, new_signing_secret(), actor),
        actor,
    )
    assert isinstance(result, Accepted), result
    return result


def test_an_endpoint_comes_back_from_the_store_as_it_was_decided(
    replicas: tuple[OrdersApplication, OrdersApplication],
) -> None:
    first, second = replicas
    decided = register(first).value
    (endpoint_id,) = decided.endpoints
    first.change_webhooks(
        "RotateWebhookSecret",
        "acme",
        lambda w: w.rotate_secret(endpoint_id, new_signing_secret(), timedelta(hours=3), PARTNER),
        PARTNER,
    )
    rotated = first.webhooks("acme")
    stored = second.webhooks("acme")
    assert rotated is not None and stored is not None
    assert stored.endpoints == rotated.endpoints
    endpoint = stored.endpoints[endpoint_id]
    assert len(signing_secrets(endpoint, endpoint.updated_at)) == 2
    assert second.webhooks("nobody") is None


def test_two_replicas_registering_for_one_new_partner_at_once_both_succeed(
    replicas: tuple[OrdersApplication, OrdersApplication],
) -> None:
    first, second = replicas
    raced = False

    def register_while_the_other_replica_does(webhooks: PartnerWebhooks) -> Refusal | None:
        nonlocal raced
        if not raced:  # the other replica stores the partner's first endpoint while this one decides
            raced = True
            register(second, "initech")
        return webhooks.register(uuid4(), SETTINGS, new_signing_secret(), Actor(Role.PARTNER, "initech"))

    result = first.change_webhooks(
        "RegisterWebhookEndpoint", "initech", register_while_the_other_replica_does, PARTNER
    )
    assert isinstance(result, Accepted), result
    stored = second.webhooks("initech")
    assert stored is not None and len(stored.endpoints) == 2


def test_a_refused_change_stores_nothing(replicas: tuple[OrdersApplication, OrdersApplication]) -> None:
    first, _ = replicas
    before = first.position()
    result = first.change_webhooks(
        "DisableWebhookEndpoint", "acme", lambda w: w.disable(uuid4(), PARTNER), PARTNER
    )
    assert isinstance(result, Refusal) and result.code is Refused.NOT_FOUND
    assert first.position() == before and first.webhooks("acme") is None


def test_a_change_that_changes_nothing_stores_nothing(
    replicas: tuple[OrdersApplication, OrdersApplication],
) -> None:
    first, _ = replicas
    (endpoint_id,) = register(first).value.endpoints
    before = first.position()
    result = first.change_webhooks(
        "EnableWebhookEndpoint", "acme", lambda w: w.enable(endpoint_id, PARTNER), PARTNER
    )
    assert isinstance(result, Accepted) and result.position == before
