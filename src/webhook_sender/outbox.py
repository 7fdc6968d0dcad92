"""The outbox: a projection of the event store into webhook messages, one per order event of a partner's
order and endpoint of that partner subscribed to its type.

The event store is the outbox (no dual writes): a message is inserted in the transaction that moves the
projection's position, with an id derived from the endpoint, the order and its version, so a batch applied
twice (a crash before the commit) writes the same rows, and `ON CONFLICT DO NOTHING` keeps the first. The
NOTIFY in the same transaction wakes the delivery loop when the messages are visible, not before.

What an endpoint receives is decided here, as the event is met: an endpoint gets the events of the types it
subscribes to, stored after it was registered, while it is enabled. The body is the order as its partner
sees it with `GET /orders/{id}`, as of that event (read at the event's version: the projection may run
behind, and the order may have moved on).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
from psycopg import Cursor, sql
from psycopg.rows import DictRow

from orders_core.actors import Actor
from orders_core.api.schemas import order_view
from orders_core.application import OrdersApplication
from orders_core.contracts import Change
from orders_core.lifecycle import Role
from orders_core.order import Order
from orders_core.webhook_messages import message_body, message_id
from orders_core.webhooks import WebhookEndpoint, webhook_event_type

CHANNEL = "webhooks_outbox"
"""The NOTIFY channel on which the outbox tells the delivery loop that messages are there."""
PARTNER_CHANNEL = "partner"


class WebhookOutbox:
    """Folds order events into webhooks.messages (see the module's description)."""

    name = "webhooks"

    def __init__(self, orders: OrdersApplication) -> None:
        self.orders = orders
        self._partners: dict[str, str | None] = {}
        """Order id -> its partner, or None for an order that is not a partner's; a cache of `orders`."""

    def forget(self) -> None:
        self._partners.clear()

    def apply(self, cursor: Cursor[DictRow], schema: str, changes: Sequence[Change]) -> None:
        orders = [c for c in changes if c.event.aggregate == "order"]
        started = [c for c in orders if c.event.name == "OrderInitiated"]
        partner_orders = []
        for c in started:
            f = c.event.fields
            partner = f["owner_id"] if f.get("channel") == PARTNER_CHANNEL else None
            self._partners[c.aggregate_id] = partner
            if partner is not None:
                partner_orders.append((c.aggregate_id, partner))
        if partner_orders:
            cursor.executemany(
                sql.SQL(
                    "INSERT INTO {} (order_id, partner_id) VALUES (%s, %s) ON CONFLICT DO NOTHING"
                ).format(sql.Identifier(schema, "orders")),
                partner_orders,
            )
        announced = [c for c in orders if webhook_event_type(c.event.name) is not None]
        self._learn_partners(cursor, schema, {c.aggregate_id for c in announced})
        endpoints: dict[str, list[WebhookEndpoint]] = {}
        rows: list[tuple[Any, ...]] = []
        for change in announced:
            partner = self._partners.get(change.aggregate_id)
            if partner is None:
                continue
            if partner not in endpoints:
                webhooks = self.orders.webhooks(partner)
                endpoints[partner] = webhooks.listed() if webhooks is not None else []
            rows.extend(self._messages(change, partner, endpoints[partner]))
        if rows:
            cursor.executemany(
                sql.SQL(
                    "INSERT INTO {} (message_id, partner_id, endpoint_id, order_id, order_version, position, "
                    "event_type, body, occurred_at, next_attempt_at) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, now()) ON CONFLICT DO NOTHING"
                ).format(sql.Identifier(schema, "messages")),
                rows,
            )
            cursor.execute(sql.SQL("NOTIFY {}").format(sql.Identifier(CHANNEL)))
        if len(self._partners) > 200_000:
            self._partners.clear()

    def _learn_partners(self, cursor: Cursor[DictRow], schema: str, order_ids: set[str]) -> None:
        """Fill the cache for `order_ids` from the table; an order it does not hold is not a partner's."""
        unknown = [i for i in order_ids if i not in self._partners]
        if not unknown:
            return
        self._partners.update(dict.fromkeys(unknown))
        query = sql.SQL("SELECT order_id::text AS id, partner_id FROM {} WHERE order_id = ANY(%s::uuid[])")
        for row in cursor.execute(query.format(sql.Identifier(schema, "orders")), (unknown,)):
            self._partners[row["id"]] = row["partner_id"]

    def _messages(
        self, change: Change, partner: str, endpoints: list[WebhookEndpoint]
    ) -> list[tuple[Any, ...]]:
        kind = webhook_event_type(change.event.name)
        assert kind is not None
        occurred = datetime.fromisoformat(change.event.timestamp)
        subscribed = [
            e for e in endpoints if e.enabled and kind in e.event_types and e.created_at <= occurred
        ]
        if not subscribed:
            return []
        order: object = self.orders.repository.get(UUID(change.aggregate_id), version=change.version)
        assert isinstance(order, Order)
        view = order_view(order, Actor(Role.PARTNER, partner), occurred)
        body = message_body(kind, change.event.timestamp, msgspec.to_builtins(view))
        return [
            (
                message_id(e.endpoint_id, change.aggregate_id, change.version),
                partner,
                e.endpoint_id,
                change.aggregate_id,
                change.version,
                change.position,
                kind.value,
                body,
                occurred,
            )
            for e in subscribed
        ]
