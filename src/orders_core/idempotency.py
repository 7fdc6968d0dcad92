"""Idempotency-Keys of order creates, as arithmetic: which order id a key's use makes, which use is the
newest, and whether a repeat asks for the same order. Pure: the application probes the store with it.

A key's order id is derived from the key (and its use number, the generation), so the event store itself
refuses a second order for one use of a key: no table of keys grows beside it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar
from uuid import NAMESPACE_URL, UUID, uuid5

import msgspec

from orders_core.actors import Actor
from orders_core.commands import InitiateOrder

ORDER_KEYS = uuid5(NAMESPACE_URL, "urn:alexandrite:order-idempotency-keys")
ORDER_KEY_GENERATIONS = uuid5(NAMESPACE_URL, "urn:alexandrite:order-idempotency-key-generations")
IDEMPOTENCY_WINDOW = timedelta(hours=24)
"""How long an Idempotency-Key is honoured unless configured otherwise (IDEMPOTENCY_WINDOW_HOURS)."""

T = TypeVar("T")


def key_order_id(actor: Actor, key: str, generation: int) -> UUID:
    """The id of the order that use number `generation` of Idempotency-Key `key` by `actor` creates.

    Deriving the id from the key makes the event store itself refuse a second order for it (the id is
    taken), with no table of keys beside it; a key is used again once its previous order has left the window.
    """
    if generation == 0 and ":" not in actor.subject:
        # The id keys had before there was a window: a retry of a key first used before an upgrade finds it.
        return uuid5(ORDER_KEYS, f"{actor.role}:{actor.subject}:{key}")
    # Encoded unambiguously: in the form above, subject "a:b" with key "c" meets subject "a" with key "b:c".
    name = msgspec.json.encode([actor.role.value, actor.subject, key, generation]).decode()
    return uuid5(ORDER_KEY_GENERATIONS, name)


def newest_generation(probe: Callable[[int], T | None]) -> tuple[int, T] | None:
    """The highest generation `probe` finds and what it found, or None if it finds not even generation 0.

    Generations are made in order (the next only once the previous has left the window), so those that
    exist are 0..n-1: a new key costs one probe, a retry two, a key used on n days about 2*log2(n). It finds
    the newest rather than stopping at one still in the window: were the window lengthened after a key's
    second order, the first would otherwise answer for it.
    """
    first = probe(0)
    if first is None:
        return None
    found, missing = (0, first), None
    step = 1
    while missing is None:  # gallop up to a generation that does not exist ...
        value = probe(found[0] + step)
        if value is None:
            missing = found[0] + step
        else:
            found, step = (found[0] + step, value), step * 2
    while missing - found[0] > 1:  # ... then bisect between the newest found and it
        middle = (found[0] + missing) // 2
        value = probe(middle)
        if value is None:
            missing = middle
        else:
            found = (middle, value)
    return found


def request_fingerprint(command: InitiateOrder) -> str:
    """A digest of what a create request asked for, to tell a retry from a reuse of its key."""
    fields: dict[str, Any] = {
        "channel": command.channel,
        "owner_id": command.owner_id,
        "contact_name": command.contact_name,
        "item_title": command.item_title,
        "material_code": command.material_code,
        "quantity": command.quantity,
        "promised_date": command.promised_date,
    }
    return hashlib.sha256(msgspec.json.encode(fields, order="sorted")).hexdigest()
