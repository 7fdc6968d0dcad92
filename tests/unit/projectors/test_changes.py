"""What the runner hands a projection from a batch of the log, and what it counts as skipped."""

from __future__ import annotations

import json
from uuid import uuid4

from eventsourcing.persistence import Notification

from orders_core.contracts import ORDER_TOPIC, WEBHOOKS_TOPIC
from projectors.runner import changes_of


def notification(position: int, topic: str, state: dict[str, object]) -> Notification:
    return Notification(
        id=position,
        originator_id=uuid4(),
        originator_version=1,
        topic=topic,
        state=json.dumps(state).encode(),
    )


def test_webhook_endpoint_events_reach_no_view_and_are_not_counted_as_skipped() -> None:
    """They carry signing secrets: no view may decode them, and they are no newer CRM's unknown events."""
    batch = [
        notification(1, f"{WEBHOOKS_TOPIC}.Started", {"partner_id": "acme"}),
        notification(2, f"{WEBHOOKS_TOPIC}.EndpointRegistered", {"secret": "whsec_" + "A" * 44}),
        notification(3, f"{WEBHOOKS_TOPIC}.SecretRotated", {"secret": "whsec_" + "B" * 44}),
    ]
    assert changes_of(batch) == ([], 0)


def test_an_order_event_of_an_unknown_kind_is_skipped_and_counted() -> None:
    batch = [notification(1, f"{ORDER_TOPIC}.EngravingAdded", {"text": "A & B"})]
    assert changes_of(batch) == ([], 1)
