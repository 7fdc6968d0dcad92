"""Partners' webhook endpoints (orders_core/webhooks.py): event types, secrets, rotation and the rules of
the aggregate."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from orders_core.actors import Actor
from orders_core.lifecycle import BY_EVENT, Role
from orders_core.outcomes import Refusal, Refused
from orders_core.webhooks import (
    MAX_ENDPOINTS,
    MAX_OVERLAP,
    ORDER_EVENTS,
    UNANNOUNCED,
    EndpointSettings,
    PartnerWebhooks,
    SigningSecret,
    WebhookEndpoint,
    WebhookEventType,
    is_signing_secret,
    new_signing_secret,
    signing_secrets,
    webhook_event_type,
)

PARTNER = Actor(Role.PARTNER, "acme")
ADMIN = Actor(Role.ADMIN, "ada")
SETTINGS = EndpointSettings(
    url="https://hooks.acme.example/alexandrite",
    event_types=frozenset({WebhookEventType.SHIPPED, WebhookEventType.PRICE_CALCULATED}),
    description="order updates",
)
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def registered(actor: Actor = PARTNER) -> tuple[PartnerWebhooks, UUID]:
    webhooks = PartnerWebhooks.start("acme", actor)
    endpoint_id = uuid4()
    assert webhooks.register(endpoint_id, SETTINGS, new_signing_secret(), actor) is None
    return webhooks, endpoint_id


def endpoint_of(webhooks: PartnerWebhooks, endpoint_id: UUID) -> WebhookEndpoint:
    found = webhooks.endpoint(endpoint_id, PARTNER)
    assert isinstance(found, WebhookEndpoint)
    return found


# --- event types ----------------------------------------------------------------------------------------


def test_every_event_type_is_named_as_standard_webhooks_name_them() -> None:
    for kind in WebhookEventType:
        assert kind.value.startswith("order.") and kind.value == kind.value.lower()
        assert " " not in kind.value


def test_every_event_type_is_produced_by_order_events_of_the_lifecycle_table() -> None:
    assert set(ORDER_EVENTS) == set(WebhookEventType)
    for kind, events in ORDER_EVENTS.items():
        assert events, kind
        assert events <= set(BY_EVENT), kind


def test_every_order_event_is_announced_by_one_type_or_deliberately_by_none() -> None:
    announced = [event for events in ORDER_EVENTS.values() for event in events]
    assert len(announced) == len(set(announced)), "an order event announced as two types"
    assert set(announced) | UNANNOUNCED == set(BY_EVENT)
    assert not set(announced) & UNANNOUNCED


@pytest.mark.parametrize(("event", "kind"), [(e, k) for k, es in ORDER_EVENTS.items() for e in es])
def test_an_order_event_maps_to_its_event_type(event: str, kind: WebhookEventType) -> None:
    assert webhook_event_type(event) is kind


def test_the_names_partners_read_in_the_issue() -> None:
    assert webhook_event_type("OrderInitiated") == "order.created"
    assert webhook_event_type("PriceCalculated") == "order.price_calculated"
    assert webhook_event_type("OrderShipped") == "order.shipped"
    assert webhook_event_type("PackagingStarted") is None


# --- secrets --------------------------------------------------------------------------------------------


def test_a_new_secret_is_whsec_and_base64_of_32_random_bytes() -> None:
    secret = new_signing_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
    assert is_signing_secret(secret)
    assert len({new_signing_secret() for _ in range(100)}) == 100


@given(st.binary(min_size=0, max_size=80))
def test_only_24_to_64_bytes_after_whsec_make_a_secret(key: bytes) -> None:
    encoded = base64.b64encode(key).decode()
    assert is_signing_secret("whsec_" + encoded) == (24 <= len(key) <= 64)
    assert not is_signing_secret(encoded)


@pytest.mark.parametrize("text", ["", "whsec_", "whsec_!!!!", "sk_" + "A" * 44, "whsec_" + "A" * 43])
def test_other_texts_are_not_secrets(text: str) -> None:
    assert not is_signing_secret(text)


def test_the_standard_webhooks_library_signs_and_verifies_with_a_new_secret() -> None:
    secret = new_signing_secret()
    body = '{"type": "order.shipped"}'
    signature = Webhook(secret).sign("msg_1", datetime.now(UTC), body)
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(int(datetime.now(UTC).timestamp()))}
    assert Webhook(secret).verify(body, {**headers, "webhook-signature": signature}) == {
        "type": "order.shipped"
    }


def test_a_secret_never_shows_in_a_repr() -> None:
    webhooks, endpoint_id = registered()
    endpoint = endpoint_of(webhooks, endpoint_id)
    assert endpoint.secret.value not in repr(endpoint)
    assert endpoint.secret.value not in repr(webhooks.endpoints)


# --- rotation -------------------------------------------------------------------------------------------


def endpoint_with(previous_until: datetime | None) -> WebhookEndpoint:
    return WebhookEndpoint(
        endpoint_id=uuid4(),
        url=SETTINGS.url,
        event_types=SETTINGS.event_types,
        description="",
        enabled=True,
        created_at=T0,
        updated_at=T0,
        secret=SigningSecret("whsec_new"),
        previous_secret=None if previous_until is None else SigningSecret("whsec_old", previous_until),
    )


@given(st.timedeltas(min_value=-MAX_OVERLAP, max_value=MAX_OVERLAP * 2))
def test_the_replaced_secret_signs_until_the_overlap_ends_and_not_a_moment_after(offset: timedelta) -> None:
    until = T0 + timedelta(hours=24)
    now = until + offset
    expected = ("whsec_new", "whsec_old") if now < until else ("whsec_new",)
    assert signing_secrets(endpoint_with(until), now) == expected


def test_without_a_rotation_one_secret_signs() -> None:
    assert signing_secrets(endpoint_with(None), T0) == ("whsec_new",)


def test_a_rotation_keeps_the_old_secret_for_the_overlap() -> None:
    webhooks, endpoint_id = registered()
    old = endpoint_of(webhooks, endpoint_id).secret.value
    new = new_signing_secret()
    assert webhooks.rotate_secret(endpoint_id, new, timedelta(hours=24), PARTNER) is None
    endpoint = endpoint_of(webhooks, endpoint_id)
    assert endpoint.previous_secret is not None and endpoint.previous_secret.valid_until is not None
    rotated_at = endpoint.updated_at
    assert endpoint.previous_secret.valid_until == rotated_at + timedelta(hours=24)
    assert signing_secrets(endpoint, rotated_at + timedelta(hours=23)) == (new, old)
    assert signing_secrets(endpoint, rotated_at + timedelta(hours=24)) == (new,)


def test_during_the_overlap_a_receiver_with_either_secret_verifies_the_message() -> None:
    """One signature per secret in the header, as Standard Webhooks has it: the sender's contract."""
    webhooks, endpoint_id = registered()
    old = endpoint_of(webhooks, endpoint_id).secret.value
    new = new_signing_secret()
    webhooks.rotate_secret(endpoint_id, new, timedelta(hours=1), PARTNER)
    endpoint = endpoint_of(webhooks, endpoint_id)
    body, now = '{"type": "order.closed"}', datetime.now(UTC)

    def headers_at(moment: datetime) -> dict[str, str]:
        signatures = " ".join(Webhook(s).sign("msg_2", now, body) for s in signing_secrets(endpoint, moment))
        return {
            "webhook-id": "msg_2",
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signatures,
        }

    during = headers_at(endpoint.updated_at + timedelta(minutes=30))
    assert Webhook(old).verify(body, during) and Webhook(new).verify(body, during)
    after = headers_at(endpoint.updated_at + timedelta(hours=1))
    assert Webhook(new).verify(body, after)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(body, after)


def test_a_rotation_without_overlap_stops_the_old_secret_at_once() -> None:
    webhooks, endpoint_id = registered()
    new = new_signing_secret()
    webhooks.rotate_secret(endpoint_id, new, timedelta(0), PARTNER)
    endpoint = endpoint_of(webhooks, endpoint_id)
    assert endpoint.previous_secret is None
    assert signing_secrets(endpoint, endpoint.updated_at) == (new,)


def test_a_second_rotation_ends_the_first_ones_overlap() -> None:
    webhooks, endpoint_id = registered()
    first, second = new_signing_secret(), new_signing_secret()
    webhooks.rotate_secret(endpoint_id, first, timedelta(hours=24), PARTNER)
    webhooks.rotate_secret(endpoint_id, second, timedelta(hours=24), PARTNER)
    endpoint = endpoint_of(webhooks, endpoint_id)
    assert signing_secrets(endpoint, endpoint.updated_at) == (second, first)


@pytest.mark.parametrize("overlap", [timedelta(seconds=-1), MAX_OVERLAP + timedelta(seconds=1)])
def test_an_overlap_out_of_bounds_is_refused(overlap: timedelta) -> None:
    webhooks, endpoint_id = registered()
    refusal = webhooks.rotate_secret(endpoint_id, new_signing_secret(), overlap, PARTNER)
    assert isinstance(refusal, Refusal) and refusal.code is Refused.INVALID


# --- the aggregate's rules ------------------------------------------------------------------------------


def test_a_partner_registers_updates_disables_enables_and_deletes_its_endpoint() -> None:
    webhooks, endpoint_id = registered()
    assert webhooks.update(endpoint_id, PARTNER, description="new words") is None
    assert endpoint_of(webhooks, endpoint_id).description == "new words"
    assert webhooks.disable(endpoint_id, PARTNER) is None
    assert not endpoint_of(webhooks, endpoint_id).enabled
    assert webhooks.enable(endpoint_id, PARTNER) is None
    assert endpoint_of(webhooks, endpoint_id).enabled
    assert webhooks.delete(endpoint_id, PARTNER) is None
    assert webhooks.endpoints == {}
    names = [type(e).__name__ for e in webhooks.collect_events()]
    assert names == [
        "Started",
        "EndpointRegistered",
        "EndpointUpdated",
        "EndpointDisabled",
        "EndpointEnabled",
        "EndpointDeleted",
    ]


def test_the_aggregate_folds_back_to_the_same_endpoints_from_its_events() -> None:
    webhooks, endpoint_id = registered()
    webhooks.rotate_secret(endpoint_id, new_signing_secret(), timedelta(hours=2), PARTNER)
    webhooks.update(endpoint_id, PARTNER, event_types=frozenset({WebhookEventType.CANCELLED}))
    events = webhooks.collect_events()
    folded: PartnerWebhooks | None = None
    for event in events:
        folded = event.mutate(folded)
    assert folded is not None and folded.endpoints == webhooks.endpoints


def test_changes_that_change_nothing_record_nothing() -> None:
    webhooks, endpoint_id = registered()
    webhooks.collect_events()
    assert webhooks.update(endpoint_id, PARTNER, url=SETTINGS.url, description=SETTINGS.description) is None
    assert webhooks.enable(endpoint_id, PARTNER) is None
    assert webhooks.collect_events() == []


def test_an_admin_manages_any_partners_endpoints() -> None:
    webhooks, endpoint_id = registered(ADMIN)
    assert webhooks.disable(endpoint_id, ADMIN) is None
    assert webhooks.endpoint(endpoint_id, PARTNER) == webhooks.endpoint(endpoint_id, ADMIN)


def test_another_partner_finds_nothing() -> None:
    webhooks, endpoint_id = registered()
    other = Actor(Role.PARTNER, "globex")
    for refusal in (
        webhooks.endpoint(endpoint_id, other),
        webhooks.disable(endpoint_id, other),
        webhooks.delete(endpoint_id, other),
        webhooks.register(uuid4(), SETTINGS, new_signing_secret(), other),
    ):
        assert isinstance(refusal, Refusal) and refusal.code is Refused.NOT_FOUND


@pytest.mark.parametrize("role", [Role.CUSTOMER, Role.SELLER, Role.OPERATOR, Role.SERVICE])
def test_other_roles_may_not_manage_endpoints(role: Role) -> None:
    webhooks, endpoint_id = registered()
    refusal = webhooks.disable(endpoint_id, Actor(role, "acme"))
    assert isinstance(refusal, Refusal) and refusal.code is Refused.FORBIDDEN


def test_an_unknown_endpoint_is_not_found() -> None:
    webhooks, _ = registered()
    refusal = webhooks.rotate_secret(uuid4(), new_signing_secret(), timedelta(hours=1), PARTNER)
    assert isinstance(refusal, Refusal) and refusal.code is Refused.NOT_FOUND


@pytest.mark.parametrize(
    "settings",
    [
        EndpointSettings(url="ftp://x.example/", event_types=SETTINGS.event_types),
        EndpointSettings(url=SETTINGS.url, event_types=frozenset()),
        EndpointSettings(url=SETTINGS.url, event_types=SETTINGS.event_types, description="x" * 501),
    ],
)
def test_invalid_settings_are_refused_and_change_nothing(settings: EndpointSettings) -> None:
    webhooks = PartnerWebhooks.start("acme", PARTNER)
    refusal = webhooks.register(uuid4(), settings, new_signing_secret(), PARTNER)
    assert isinstance(refusal, Refusal) and refusal.code is Refused.INVALID
    assert webhooks.endpoints == {}


def test_a_secret_not_in_standard_webhooks_form_is_refused() -> None:
    webhooks = PartnerWebhooks.start("acme", PARTNER)
    refusal = webhooks.register(uuid4(), SETTINGS, "hunter2", PARTNER)
    assert isinstance(refusal, Refusal) and refusal.code is Refused.INVALID


def test_a_partner_has_at_most_so_many_endpoints() -> None:
    webhooks = PartnerWebhooks.start("acme", PARTNER)
    for _ in range(MAX_ENDPOINTS):
        assert webhooks.register(uuid4(), SETTINGS, new_signing_secret(), PARTNER) is None
    refusal = webhooks.register(uuid4(), SETTINGS, new_signing_secret(), PARTNER)
    assert isinstance(refusal, Refusal) and refusal.code is Refused.NOT_ALLOWED
