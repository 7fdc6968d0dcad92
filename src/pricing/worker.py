"""The pricing worker: one of N competing consumers of `pricing.requests`.

For each submitted order it fetches the model by sha256 (and checks the bytes hash to it), quotes it in a
thread, publishes the result with confirms, and only then acks. An unpriceable model is a result, not an
error. Undecodable messages are poison (rejected to the dead-letter queue); faults (a missing blob, a
broken quote) are retried up to the delivery limit and then dead-lettered too.
"""

from __future__ import annotations

import asyncio
import hashlib
import time

import msgspec
import structlog
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind

from orders_core.contracts import (
    RESULTS_EXCHANGE,
    BlobReader,
    Delivery,
    OrderSubmittedV1,
    PricingResultV1,
    Transport,
)
from pricing import metrics
from pricing.limits import DEFAULT_LIMITS, Limits
from pricing.quote import quote_for
from pricing.rejections import Rejection

log = structlog.get_logger("pricing")
tracer = trace.get_tracer("pricing.worker")


class CorruptBlob(Exception):
    """The stored model does not hash to the sha256 the order names."""


class PricingWorker:
    """Quotes submitted orders."""

    def __init__(self, transport: Transport, blobs: BlobReader, limits: Limits = DEFAULT_LIMITS) -> None:
        self.transport = transport
        self.blobs = blobs
        self.limits = limits

    async def handle(self, delivery: Delivery) -> None:
        """Price one request and publish the result before acking it."""
        try:
            request = msgspec.json.decode(delivery.body, type=OrderSubmittedV1)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            log.error("poison pricing request", message_id=delivery.message_id, error=str(e))
            metrics.POISON.inc()
            await delivery.reject()
            return
        with metrics.IN_PROGRESS.track_inprogress():
            await self._price_and_publish(delivery, request)

    async def _price_and_publish(self, delivery: Delivery, request: OrderSubmittedV1) -> None:
        headers = dict(delivery.headers)
        with tracer.start_as_current_span(
            "price model",
            context=propagate.extract(headers),
            kind=SpanKind.CONSUMER,
            attributes={"order.id": request.order_id, "messaging.message.id": delivery.message_id},
        ) as span:
            started = time.perf_counter()
            result = await asyncio.to_thread(self.price, request)
            seconds = time.perf_counter() - started
            size = metrics.mesh_size(
                result.quote.figures.triangle_count if result.quote else request.model.triangle_count
            )
            outcome = "quoted" if result.quote else "rejected"
            span.set_attributes({"pricing.outcome": outcome, "pricing.mesh_size": size})
            propagate.inject(headers)  # the results consumer continues this trace
            await self.transport.publish(
                RESULTS_EXCHANGE,
                "pricing.result",
                msgspec.json.encode(result),
                message_id=result.message_id,
                headers=headers,
            )
        metrics.QUOTE_SECONDS.labels(size).observe(seconds)
        metrics.RESULTS.labels(outcome, result.rejection_code or "").inc()
        await delivery.ack()
        log.info(
            "priced",
            order_id=request.order_id,
            message_id=delivery.message_id,
            outcome=outcome,
            reason=result.rejection_code,
            seconds=round(seconds, 4),
            mesh_size=size,
            redelivered=delivery.redelivered,
            correlation_id=delivery.headers.get("correlation_id"),
        )

    def price(self, request: OrderSubmittedV1) -> PricingResultV1:
        """The quote or the rejection for one request (raises on faults, not on bad models)."""
        data = self.blobs.read(request.model.sha256)
        if hashlib.sha256(data).hexdigest() != request.model.sha256:
            raise CorruptBlob(f"blob {request.model.sha256} does not match its hash")
        outcome = quote_for(
            data,
            request.model.format,
            material=request.material,
            labour_rates=request.labour_rates,
            quantity=request.quantity,
            currency=request.currency,
            model_sha256=request.model.sha256,
            limits=self.limits,
        )
        result = PricingResultV1(
            message_id=f"result:{request.message_id}",
            request_id=request.message_id,
            order_id=request.order_id,
            submission=request.version,
            model_sha256=request.model.sha256,
        )
        if isinstance(outcome, Rejection):
            return msgspec.structs.replace(
                result, rejection_code=outcome.reason.value, rejection_reason=outcome.detail
            )
        quote = msgspec.structs.replace(outcome, catalog_version=request.catalog_version)
        return msgspec.structs.replace(result, quote=quote)
