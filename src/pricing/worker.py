"""The pricing worker: one of N competing consumers of `pricing.requests`.

For each submitted order it fetches the model by sha256 (and checks the bytes hash to it), quotes it in a
thread, publishes the result with confirms, and only then acks. A quote, and a model rejected as too thin,
get a preview (pricing.preview) stored beside the model, its sha256 in the result; it is made within the
quote's time limit or not at all, and a preview that fails leaves the quote as it is. An unpriceable
model is a result, not an error. Undecodable messages are poison (rejected to the dead-letter queue);
faults (a missing blob, a broken quote) are retried up to the delivery limit and then dead-lettered too.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

import msgspec
import structlog
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind

from orders_core.contracts import (
    RESULTS_EXCHANGE,
    BlobReader,
    Delivery,
    OrderSubmittedV1,
    PreviewWriter,
    PricingResultV1,
    Transport,
)
from pricing import metrics
from pricing.limits import DEFAULT_LIMITS, Deadline, Limits
from pricing.meshes import Triangles
from pricing.preview import TRIANGLE_BUDGET, preview_glb
from pricing.quote import quote_for
from pricing.rejections import Reason, Rejection
from pricing.thickness import Thickness

log = structlog.get_logger("pricing")
tracer = trace.get_tracer("pricing.worker")


PREVIEW_SECONDS_PER_TRIANGLE = 4e-6
"""What a preview is reckoned to cost per triangle of a model above the budget (welding the corners and
simplifying: 2.7-3.0 s at 1M triangles, 7.0 s at 2M on the 2-core development machine under load,
bench/preview.py); one is started only if that fits in what is left of the quote's time limit."""
PREVIEW_SECONDS_WITHIN_BUDGET = 0.5
"""What a preview of a model within the budget is reckoned to cost at most (0.2 s at 100k)."""


class CorruptBlob(Exception):
    """The stored model does not hash to the sha256 the order names."""


class PricingWorker:
    """Quotes submitted orders."""

    def __init__(
        self,
        transport: Transport,
        blobs: BlobReader,
        limits: Limits = DEFAULT_LIMITS,
        previews: PreviewWriter | None = None,
    ) -> None:
        self.transport = transport
        self.blobs = blobs
        self.limits = limits
        self.previews = previews
        """Where previews go (None: none are made)."""

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
        deadline = Deadline.after(self.limits.time_limit_s)
        measured: list[tuple[Triangles, Thickness]] = []
        outcome = quote_for(
            data,
            request.model.format,
            material=request.material,
            labour_rates=request.labour_rates,
            quantity=request.quantity,
            currency=request.currency,
            model_sha256=request.model.sha256,
            limits=self.limits,
            deadline=deadline,
            measured=lambda triangles, thickness: measured.append((triangles, thickness)),
        )
        preview = None
        wanted = not isinstance(outcome, Rejection) or outcome.reason is Reason.TOO_THIN
        if measured and wanted:
            preview = self.preview(request, *measured[0], deadline)
        result = PricingResultV1(
            message_id=f"result:{request.message_id}",
            request_id=request.message_id,
            order_id=request.order_id,
            submission=request.version,
            model_sha256=request.model.sha256,
        )
        if isinstance(outcome, Rejection):
            return msgspec.structs.replace(
                result,
                rejection_code=outcome.reason.value,
                rejection_reason=outcome.detail,
                preview_sha256=preview,
            )
        quote = msgspec.structs.replace(
            outcome, catalog_version=request.catalog_version, preview_sha256=preview
        )
        return msgspec.structs.replace(result, quote=quote)

    def preview(
        self, request: OrderSubmittedV1, triangles: Triangles, thickness: Thickness, deadline: Deadline
    ) -> str | None:
        """Make and store the preview of the measured model; its sha256, or None when it was skipped."""
        if self.previews is None or thickness.per_triangle is None:
            return None
        count = len(triangles)
        reckoned = (
            PREVIEW_SECONDS_WITHIN_BUDGET
            if count <= TRIANGLE_BUDGET
            else count * PREVIEW_SECONDS_PER_TRIANGLE
        )
        left = deadline.at - time.monotonic()
        context: dict[str, Any] = {"order_id": request.order_id, "triangles": count}
        if reckoned > left:
            log.warning("preview skipped", reckoned_s=round(reckoned, 2), left_s=round(left, 2), **context)
            metrics.PREVIEWS.labels("skipped").inc()
            return None
        started = time.perf_counter()
        try:
            content = preview_glb(triangles, thickness.per_triangle, thickness.min_wall_mm)
            sha256 = self.previews.put_preview(content)
        except Exception:
            log.exception("preview failed", **context)
            metrics.PREVIEWS.labels("failed").inc()
            return None
        metrics.PREVIEWS.labels("made").inc()
        log.info(
            "preview made",
            bytes=len(content),
            seconds=round(time.perf_counter() - started, 3),
            **context,
        )
        return sha256
