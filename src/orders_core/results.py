"""The pricing results consumer: turns each result into RecordQuote or RejectModel, exactly once in effect.

A result answers one submission; a redelivered or stale result is refused by the order (nothing appended)
and acked. The message is acked only after the append committed; a fault (database down) retries it.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from uuid import UUID

import msgspec
import structlog
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind

from orders_core import metrics
from orders_core.actors import Actor
from orders_core.application import OrdersApplication, utc_now
from orders_core.commands import Command, RecordQuote, RejectModel
from orders_core.contracts import Delivery, PricingResultV1
from orders_core.lifecycle import Role
from orders_core.order import Order
from orders_core.outcomes import Accepted, Refusal
from orders_core.values import QUOTE_VALIDITY

PRICING = Actor(Role.SERVICE, "pricing")
log = structlog.get_logger("results")
tracer = trace.get_tracer("orders_core.results")


class ResultsConsumer:
    """Consumes `pricing.results`."""

    def __init__(self, orders: OrdersApplication, quote_validity: timedelta = QUOTE_VALIDITY) -> None:
        self.orders = orders
        self.quote_validity = quote_validity
        """How long a quote recorded now holds (QUOTE_VALID_HOURS): the CRM sets a quote's term, not the
        pricing service, as it is the CRM that sells at that price."""

    async def handle(self, delivery: Delivery) -> None:
        """Apply one delivery; ack after the effect, reject poison, let faults propagate (redelivery)."""
        try:
            result = msgspec.json.decode(delivery.body, type=PricingResultV1)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            log.error("poison result", message_id=delivery.message_id, error=str(e))
            metrics.DEAD_LETTERS.labels("pricing.results").inc()
            await delivery.reject()
            return
        headers = dict(delivery.headers)
        with tracer.start_as_current_span(
            "record pricing result",
            context=propagate.extract(headers),
            kind=SpanKind.CONSUMER,
            attributes={"order.id": result.order_id, "messaging.message.id": delivery.message_id},
        ):
            meta = {k: v for k, v in headers.items() if k == "correlation_id"}
            propagate.inject(meta)  # the RecordQuote/RejectModel event remembers this span
            outcome = await asyncio.to_thread(self.apply, result, meta)
        await delivery.ack()
        if isinstance(outcome, Refusal):
            effect = "none"
        else:
            effect = "quote_recorded" if result.quote else "model_rejected"
        metrics.RESULTS_APPLIED.labels(effect).inc()
        log.info(
            "pricing result",
            order_id=result.order_id,
            message_id=delivery.message_id,
            effect=effect,
            why_none=outcome.reason if isinstance(outcome, Refusal) else None,
            redelivered=delivery.redelivered,
            correlation_id=delivery.headers.get("correlation_id"),
        )

    def apply(self, result: PricingResultV1, meta: dict[str, str]) -> Accepted[Order] | Refusal:
        """RecordQuote or RejectModel for the submission the result answers."""
        command = command_for(result, utc_now() + self.quote_validity)
        return self.orders.execute(UUID(result.order_id), command, PRICING, meta)


def command_for(result: PricingResultV1, valid_until: datetime) -> Command:
    """The order command a pricing result stands for; a quote holds until `valid_until`."""
    if result.quote is not None:
        quote = msgspec.structs.replace(result.quote, valid_until=valid_until)
        return RecordQuote(quote, submission=result.submission)
    reason = result.rejection_reason or "the model could not be priced"
    return RejectModel(
        result.model_sha256, reason, submission=result.submission, preview_sha256=result.preview_sha256
    )
