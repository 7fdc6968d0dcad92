"""Partners' webhook endpoints: where the order events a partner subscribes to are to be sent, and the
secrets they are signed with (Standard Webhooks). Pure: no I/O, no edge library.

One aggregate per partner, `PartnerWebhooks`, holds all of that partner's endpoints (at most
MAX_ENDPOINTS): its id is derived from the partner's id, so listing a partner's endpoints is one read, an
endpoint can only be reached through its partner's aggregate (another partner's endpoint is simply not
there: 404), and the sender will find a partner's subscriptions for an order event in one read, no
projection needed.

Signing secrets are `whsec_` + base64 of 32 random bytes, as Standard Webhooks and its libraries take them.
They are kept in the events (the event store is the write side), held by the aggregate in `SigningSecret`s
whose repr hides them, and never shown by a read: only the answers to a registration and a rotation carry a
secret, each its new one, once.
"""

from __future__ import annotations

import base64
import binascii
import enum
import secrets
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate

from orders_core.actors import Actor
from orders_core.lifecycle import Role
from orders_core.outcomes import Refusal, Refused
from orders_core.webhook_urls import parse_webhook_url


class WebhookEventType(enum.StrEnum):
    """What a partner can subscribe to, named as Standard Webhooks and Stripe name theirs (`noun.verb`)."""

    ORDER_CREATED = "order.created"
    MODEL_REJECTED = "order.model_rejected"
    PRICE_CALCULATED = "order.price_calculated"
    APPROVED = "order.approved"
    MANUFACTURING_STARTED = "order.manufacturing_started"
    MANUFACTURING_COMPLETED = "order.manufacturing_completed"
    SHIPPED = "order.shipped"
    """Its message carries the carrier and the tracking number."""
    CLOSED = "order.closed"
    CANCELLED = "order.cancelled"


ORDER_EVENTS: dict[WebhookEventType, frozenset[str]] = {
    WebhookEventType.ORDER_CREATED: frozenset({"OrderInitiated"}),
    WebhookEventType.MODEL_REJECTED: frozenset({"ModelRejected"}),
    WebhookEventType.PRICE_CALCULATED: frozenset({"PriceCalculated"}),
    WebhookEventType.APPROVED: frozenset({"ManufacturingApproved"}),
    WebhookEventType.MANUFACTURING_STARTED: frozenset({"ManufacturingStarted"}),
    WebhookEventType.MANUFACTURING_COMPLETED: frozenset({"ManufacturingCompleted"}),
    WebhookEventType.SHIPPED: frozenset({"OrderShipped"}),
    WebhookEventType.CLOSED: frozenset({"OrderClosed"}),
    WebhookEventType.CANCELLED: frozenset({"OrderCancelled"}),
}
"""The order events (names of the lifecycle table's events) that produce each webhook event type."""
UNANNOUNCED: frozenset[str] = frozenset(
    {"ModelAttached", "OrderSubmitted", "RepriceRequested", "PackagingStarted"}
)
"""Order events no webhook announces: the partner's own upload and submission, which it already knows of,
a re-pricing (its new quote is announced as `order.price_calculated`), and packaging, a step inside the
workshop. Every event of the lifecycle table is either here or in
ORDER_EVENTS (tests/unit/orders_core/test_webhooks.py), so a new row makes someone decide."""
BY_ORDER_EVENT: dict[str, WebhookEventType] = {
    event: kind for kind, events in ORDER_EVENTS.items() for event in events
}


def webhook_event_type(order_event: str) -> WebhookEventType | None:
    """The webhook event type an order event (by its class name) is announced as, or None."""
    return BY_ORDER_EVENT.get(order_event)


MAX_ENDPOINTS = 16
"""Endpoints one partner may have (Stripe's limit): bounds the aggregate and the fan-out of one event."""
MAX_DESCRIPTION = 500
SECRET_PREFIX = "whsec_"  # noqa: S105 - the prefix Standard Webhooks gives every secret, not a secret
SECRET_BYTES = 32
"""Random bytes in a new secret: Standard Webhooks takes 24 to 64."""
DEFAULT_OVERLAP = timedelta(hours=24)
MAX_OVERLAP = timedelta(days=7)
"""How long a replaced secret may go on signing: a partner deploys the new one within it."""


def new_signing_secret() -> str:
    """A fresh signing secret in Standard Webhooks form."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def is_signing_secret(text: str) -> bool:
    """Whether `text` is a signing secret in Standard Webhooks form (`whsec_` + base64 of 24-64 bytes)."""
    if not text.startswith(SECRET_PREFIX):
        return False
    try:
        key = base64.b64decode(text.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        return False
    return 24 <= len(key) <= 64


@dataclass(frozen=True)
class SigningSecret:
    """A secret and until when it signs (None: until it is replaced). Its repr never shows the value."""

    value: str = field(repr=False)
    valid_until: datetime | None = None


@dataclass(frozen=True)
class WebhookEndpoint:
    """One endpoint of a partner: where to send, what, whether it is on, and its secrets."""

    endpoint_id: UUID
    url: str
    event_types: frozenset[WebhookEventType]
    description: str
    enabled: bool
    created_at: datetime
    updated_at: datetime
    secret: SigningSecret
    previous_secret: SigningSecret | None = None
    """The secret the last rotation replaced, which signs beside `secret` until its `valid_until`."""
    disabled_reason: str | None = None
    """Why the sender disabled it (a 410 answer, or failing for days); None if it is on or its partner
    turned it off."""


def signing_secrets(endpoint: WebhookEndpoint, now: datetime) -> tuple[str, ...]:
    """The secrets to sign a message to `endpoint` with at `now`: the current one, and during a rotation's
    overlap the one it replaced (a Standard Webhooks signature header carries one signature per secret, so
    a receiver that knows either verifies the message)."""
    previous = endpoint.previous_secret
    if previous is None or previous.valid_until is None or now >= previous.valid_until:
        return (endpoint.secret.value,)
    return (endpoint.secret.value, previous.value)


@dataclass(frozen=True)
class EndpointSettings:
    """What a partner chooses for an endpoint."""

    url: str
    event_types: frozenset[WebhookEventType]
    description: str = ""


def partner_webhooks_id(partner_id: str) -> UUID:
    """The id of `partner_id`'s aggregate: derived, so every process finds it without an index."""
    return uuid5(NAMESPACE_URL, f"urn:alexandrite:webhooks:{partner_id}")


def management_refusal(actor: Actor, partner_id: str) -> Refusal | None:
    """Why `actor` may not manage `partner_id`'s webhook endpoints; None if they may.

    A partner manages its own, an admin anyone's. Another partner's endpoints answer as if there were none,
    so a partner learns nothing of them, not even that they exist.
    """
    if actor.role is Role.ADMIN or (actor.role is Role.PARTNER and actor.subject == partner_id):
        return None
    if actor.role is Role.PARTNER:
        return Refusal(Refused.NOT_FOUND, "no such webhook endpoint")
    return Refusal(Refused.FORBIDDEN, f"a {actor.role} may not manage webhook endpoints")


def settings_refusal(settings: EndpointSettings) -> Refusal | None:
    """Why `settings` cannot be an endpoint's (its form; where the URL leads is judged at the edge, which
    resolves the host: webhook_urls.destination_refusal)."""
    parsed = parse_webhook_url(settings.url)
    if isinstance(parsed, str):
        return Refusal(Refused.INVALID, parsed)
    if not settings.event_types:
        return Refusal(Refused.INVALID, "an endpoint subscribes to at least one event type")
    if len(settings.description) > MAX_DESCRIPTION:
        return Refusal(Refused.INVALID, f"a description has at most {MAX_DESCRIPTION} characters")
    return None


class PartnerWebhooks(Aggregate):
    """One partner's webhook endpoints (see the module's description)."""

    class Event(Aggregate.Event):
        actor_role: str
        actor_id: str

    class Started(Event, Aggregate.Created):
        partner_id: str

        def apply(self, aggregate: Any) -> None:
            aggregate.partner_id = self.partner_id

    class EndpointRegistered(Event):
        endpoint_id: UUID
        url: str
        event_types: list[str]
        description: str
        secret: str

        def apply(self, aggregate: Any) -> None:
            aggregate.endpoints[self.endpoint_id] = WebhookEndpoint(
                endpoint_id=self.endpoint_id,
                url=self.url,
                event_types=frozenset(WebhookEventType(t) for t in self.event_types),
                description=self.description,
                enabled=True,
                created_at=self.timestamp,
                updated_at=self.timestamp,
                secret=SigningSecret(self.secret),
            )

    class EndpointChange(Event):
        """An event that changes one existing endpoint."""

        endpoint_id: UUID

        def apply(self, aggregate: Any) -> None:
            endpoints: dict[UUID, WebhookEndpoint] = aggregate.endpoints
            endpoint = endpoints[self.endpoint_id]
            endpoints[self.endpoint_id] = replace(
                endpoint, updated_at=self.timestamp, **self.changes(endpoint)
            )

        def changes(self, endpoint: WebhookEndpoint) -> dict[str, Any]:
            """The endpoint's fields this event sets."""
            return {}

    class EndpointUpdated(EndpointChange):
        url: str
        event_types: list[str]
        description: str

        def changes(self, endpoint: WebhookEndpoint) -> dict[str, Any]:
            types = frozenset(WebhookEventType(t) for t in self.event_types)
            return {"url": self.url, "event_types": types, "description": self.description}

    class EndpointDisabled(EndpointChange):
        reason: str = ""
        """Why the sender disabled it; empty when its partner (or an admin) did."""

        def changes(self, endpoint: WebhookEndpoint) -> dict[str, Any]:
            return {"enabled": False, "disabled_reason": self.reason or None}

    class EndpointEnabled(EndpointChange):
        def changes(self, endpoint: WebhookEndpoint) -> dict[str, Any]:
            return {"enabled": True, "disabled_reason": None}

    class SecretRotated(EndpointChange):
        secret: str
        overlap_seconds: int

        def changes(self, endpoint: WebhookEndpoint) -> dict[str, Any]:
            # The replaced secret signs until the overlap ends, counted from the rotation itself; a secret
            # an earlier rotation replaced stops signing now (at most two secrets sign at once).
            until = self.timestamp + timedelta(seconds=self.overlap_seconds)
            previous = SigningSecret(endpoint.secret.value, until) if self.overlap_seconds > 0 else None
            return {"secret": SigningSecret(self.secret), "previous_secret": previous}

    class EndpointDeleted(Event):
        endpoint_id: UUID

        def apply(self, aggregate: Any) -> None:
            aggregate.endpoints.pop(self.endpoint_id, None)

    def __init__(self) -> None:
        self.partner_id = ""
        self.endpoints: dict[UUID, WebhookEndpoint] = {}

    @classmethod
    def start(cls, partner_id: str, actor: Actor) -> PartnerWebhooks:
        """A partner's aggregate, before its first endpoint."""
        return cls._create(
            cls.Started,
            id=partner_webhooks_id(partner_id),
            actor_role=actor.role.value,
            actor_id=actor.subject,
            partner_id=partner_id,
        )

    def listed(self) -> list[WebhookEndpoint]:
        """The endpoints, oldest first."""
        return sorted(self.endpoints.values(), key=lambda e: (e.created_at, str(e.endpoint_id)))

    def register(
        self, endpoint_id: UUID, settings: EndpointSettings, secret: str, actor: Actor
    ) -> Refusal | None:
        """Add an endpoint, enabled, signing with `secret`."""
        refusal = management_refusal(actor, self.partner_id) or settings_refusal(settings)
        if refusal is None and not is_signing_secret(secret):
            refusal = Refusal(Refused.INVALID, "not a signing secret in Standard Webhooks form")
        if refusal is None and endpoint_id in self.endpoints:
            refusal = Refusal(Refused.NOT_ALLOWED, f"there is already an endpoint {endpoint_id}")
        if refusal is None and len(self.endpoints) >= MAX_ENDPOINTS:
            refusal = Refusal(Refused.NOT_ALLOWED, f"a partner has at most {MAX_ENDPOINTS} webhook endpoints")
        if refusal is None:
            self._trigger(
                self.EndpointRegistered,
                actor,
                endpoint_id=endpoint_id,
                url=settings.url,
                event_types=sorted(settings.event_types),
                description=settings.description,
                secret=secret,
            )
        return refusal

    def update(
        self,
        endpoint_id: UUID,
        actor: Actor,
        *,
        url: str | None = None,
        event_types: frozenset[WebhookEventType] | None = None,
        description: str | None = None,
    ) -> Refusal | None:
        """Change what is given of the endpoint's URL, event types and description (None: unchanged)."""
        found = self.endpoint(endpoint_id, actor)
        if isinstance(found, Refusal):
            return found
        settings = EndpointSettings(
            url=found.url if url is None else url,
            event_types=found.event_types if event_types is None else event_types,
            description=found.description if description is None else description,
        )
        refusal = settings_refusal(settings)
        unchanged = (found.url, found.event_types, found.description) == (
            settings.url,
            settings.event_types,
            settings.description,
        )
        if refusal is None and not unchanged:
            self._trigger(
                self.EndpointUpdated,
                actor,
                endpoint_id=endpoint_id,
                url=settings.url,
                event_types=sorted(settings.event_types),
                description=settings.description,
            )
        return refusal

    def disable(self, endpoint_id: UUID, actor: Actor) -> Refusal | None:
        """Stop sending to the endpoint (its messages are given up while it is off; a replay sends them
        once it is on again)."""
        found = self.endpoint(endpoint_id, actor)
        if isinstance(found, Refusal):
            return found
        if found.enabled:
            self._trigger(self.EndpointDisabled, actor, endpoint_id=endpoint_id)
        return None

    def disable_undeliverable(self, endpoint_id: UUID, reason: str, actor: Actor) -> Refusal | None:
        """The webhook sender (a service) turns off an endpoint that answered 410 Gone or failed for days,
        saying why; its partner reads the reason on the endpoint, enables it once it receives again, and
        replays what it missed."""
        if actor.role is not Role.SERVICE:
            return Refusal(Refused.FORBIDDEN, "only the webhook sender disables an endpoint as undeliverable")
        if not reason:
            return Refusal(Refused.INVALID, "an endpoint is disabled as undeliverable with a reason")
        found = self.endpoints.get(endpoint_id)
        if found is None:
            return Refusal(Refused.NOT_FOUND, f"no webhook endpoint {endpoint_id}")
        if found.enabled:
            self._trigger(self.EndpointDisabled, actor, endpoint_id=endpoint_id, reason=reason[:500])
        return None

    def enable(self, endpoint_id: UUID, actor: Actor) -> Refusal | None:
        """Send to the endpoint again."""
        found = self.endpoint(endpoint_id, actor)
        if isinstance(found, Refusal):
            return found
        if not found.enabled:
            self._trigger(self.EndpointEnabled, actor, endpoint_id=endpoint_id)
        return None

    def rotate_secret(
        self, endpoint_id: UUID, secret: str, overlap: timedelta, actor: Actor
    ) -> Refusal | None:
        """Sign with `secret` from now on, and with the replaced secret too for `overlap` (0: not at all,
        for a secret that leaked)."""
        found = self.endpoint(endpoint_id, actor)
        if isinstance(found, Refusal):
            return found
        if not is_signing_secret(secret):
            return Refusal(Refused.INVALID, "not a signing secret in Standard Webhooks form")
        if not timedelta(0) <= overlap <= MAX_OVERLAP:
            return Refusal(Refused.INVALID, f"the overlap must be from 0 to {MAX_OVERLAP.days} days")
        seconds = int(overlap.total_seconds())
        self._trigger(
            self.SecretRotated, actor, endpoint_id=endpoint_id, secret=secret, overlap_seconds=seconds
        )
        return None

    def delete(self, endpoint_id: UUID, actor: Actor) -> Refusal | None:
        """Remove the endpoint for good (its secret with it)."""
        found = self.endpoint(endpoint_id, actor)
        if isinstance(found, Refusal):
            return found
        self._trigger(self.EndpointDeleted, actor, endpoint_id=endpoint_id)
        return None

    def endpoint(self, endpoint_id: UUID, actor: Actor) -> WebhookEndpoint | Refusal:
        """The endpoint as `actor` may see it, or why not (404 for one that is not theirs)."""
        refusal = management_refusal(actor, self.partner_id)
        if refusal is not None:
            return refusal
        found = self.endpoints.get(endpoint_id)
        if found is None:
            return Refusal(Refused.NOT_FOUND, f"no webhook endpoint {endpoint_id}")
        return found

    def _trigger(self, event_class: type[Event], actor: Actor, **fields: Any) -> None:
        self.trigger_event(event_class, actor_role=actor.role.value, actor_id=actor.subject, **fields)
