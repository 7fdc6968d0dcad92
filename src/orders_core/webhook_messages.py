"""What the webhook sender sends and when: message ids, bodies, Standard Webhooks signatures, the retry
schedule and what an answer means. Pure: no I/O, no edge library (hmac and base64 are arithmetic).

Standard Webhooks (https://www.standardwebhooks.com, spec v1): each message is POSTed with
- `webhook-id`: the message's id, the same on every attempt and replay, so a receiver deduplicates on it;
- `webhook-timestamp`: the attempt's time in integer Unix seconds (receivers refuse old ones: replay attacks);
- `webhook-signature`: `v1,<base64 HMAC-SHA256>` of `{id}.{timestamp}.{body}` under each signing secret,
  separated by spaces (during a rotation's overlap, one per secret; a receiver accepts any that verifies).
The body is JSON: `{"type": ..., "timestamp": ..., "data": ...}`.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

import msgspec

from orders_core.webhooks import SECRET_PREFIX, WebhookEventType

RETRY_SCHEDULE: tuple[timedelta, ...] = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
)
"""The wait after each failed attempt (the first attempt is at once): Standard Webhooks' and Svix's schedule.
Eight attempts over about 27.6 hours, so a receiver that is down for a day still gets every message.
Each wait is drawn within JITTER (a tenth) of its value, so the retries of one outage do not arrive as one
wave, and the eight attempts still span more than a day."""
JITTER = 0.1
DISABLE_AFTER = timedelta(days=5)
"""An endpoint whose attempts have all failed for this long (none answered 2xx since) is disabled."""
ATTEMPT_SECONDS = 10.0
"""How long one attempt may take, connecting and answering, before it counts as failed (a timeout)."""


def message_id(endpoint_id: UUID, order_id: str, order_version: int) -> str:
    """The `webhook-id` of the message announcing version `order_version` of an order to an endpoint:
    derived, so the outbox writes the same id however often it meets the event (a replayed batch)."""
    name = f"urn:alexandrite:webhook:{endpoint_id}:{order_id}:{order_version}"
    return "msg_" + uuid5(NAMESPACE_URL, name).hex


def message_body(event_type: WebhookEventType, occurred_at: str, data: Any) -> str:
    """The JSON body of a message: its type, when the order event happened, and the order."""
    return msgspec.json.encode({"type": event_type.value, "timestamp": occurred_at, "data": data}).decode()


def signature(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    """One `v1,` signature of a message under `secret` (a `whsec_` secret, as the receiver holds it)."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    content = f"{msg_id}.{timestamp}.{body}".encode()
    return "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()


def signed_headers(secrets: Sequence[str], msg_id: str, sent_at: datetime, body: str) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt at `sent_at`, signed with every secret in `secrets`."""
    timestamp = int(sent_at.timestamp())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(s, msg_id, timestamp, body) for s in secrets),
        "content-type": "application/json",
    }


ENDPOINT_DISABLED = "the endpoint is disabled"
"""Why a message is given up unsent (`failed`) while its endpoint is disabled: the partner's choice, or
the sender's, which the endpoint and its metric report. Not a failed delivery: enable, then replay."""
ENDPOINT_DELETED = "the endpoint was deleted"
"""Why a message is `dropped`: the partner removed its endpoint, and nobody is left to deliver it to."""


class Outcome(enum.StrEnum):
    """What an attempt means for its message."""

    DELIVERED = "delivered"
    RETRY = "retry"
    FAILED = "failed"
    """Given up: retries spent, or the endpoint answered 410 Gone (which also disables it)."""


@dataclass(frozen=True)
class Verdict:
    """What to do after an attempt: the message's outcome, when to try again, and whether the endpoint is
    to be disabled (and why)."""

    outcome: Outcome
    retry_at: datetime | None = None
    disable: str | None = None


def verdict(
    status_code: int | None,
    attempts: int,
    now: datetime,
    failing_since: datetime | None,
    *,
    schedule: Sequence[timedelta] = RETRY_SCHEDULE,
    disable_after: timedelta = DISABLE_AFTER,
    rand: random.Random | None = None,
) -> Verdict:
    """What follows attempt number `attempts` (1 for the first) that got `status_code` (None: no answer).

    2xx is delivered. 410 Gone says the receiver wants no more: failed, and the endpoint disabled. Anything
    else (3xx too: redirects are not followed, a moved endpoint is updated by its partner) is retried after
    the schedule's next wait, until the schedule is spent. An endpoint failing since `failing_since` for
    longer than `disable_after` is disabled.
    """
    if status_code is not None and 200 <= status_code < 300:
        return Verdict(Outcome.DELIVERED)
    if status_code == 410:
        return Verdict(Outcome.FAILED, disable="the endpoint answered 410 Gone")
    since = failing_since or now
    disable = None
    if now - since >= disable_after:
        disable = f"every attempt has failed since {since:%Y-%m-%d %H:%M} UTC ({_days(now - since)})"
    if attempts > len(schedule) or disable is not None:
        return Verdict(Outcome.FAILED, disable=disable)
    wait = schedule[attempts - 1].total_seconds() * (rand or random).uniform(1 - JITTER, 1 + JITTER)
    return Verdict(Outcome.RETRY, retry_at=now + timedelta(seconds=wait))


def _days(span: timedelta) -> str:
    days = span.total_seconds() / 86400
    return f"{days:.1f} days"


def parse_schedule(text: str) -> tuple[timedelta, ...]:
    """A schedule written as comma-separated seconds (WEBHOOK_RETRY_SCHEDULE), e.g. `5,300,1800`."""
    waits = tuple(timedelta(seconds=float(part)) for part in text.split(",") if part.strip())
    if not waits or any(not w.total_seconds() >= 0 for w in waits):
        raise ValueError(f"a retry schedule is one or more waits in seconds, 0 or more: {text!r}")
    return waits
