"""The pricing worker makes a preview with each quote and too-thin rejection, stores it beside the model and
names it in the result; a preview that would not fit in the quote's time, or fails, is left out and the
quote stands (a real worker on a real local blob store, no broker: `PricingWorker.price`)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from backbone.transport_memory import MemoryTransport
from orders_core.blobs import LocalBlobStore
from orders_core.contracts import ModelFile, OrderSubmittedV1, PricingResultV1
from pricing import worker as worker_module
from pricing.worker import PricingWorker
from tests.unit.pricing.solids import GOLD, LABOUR, binary_stl, ring


class FullDisk(LocalBlobStore):
    """A store whose previews cannot be written (the disk is full)."""

    def put_preview(self, content: bytes) -> str:
        raise OSError(28, "No space left on device")


def request_for(store: LocalBlobStore, model: bytes) -> OrderSubmittedV1:
    pending = store.begin(len(model))
    pending.write(model)
    pending.finish()
    sha = pending.commit()
    return OrderSubmittedV1(
        message_id="order:1:v3",
        order_id="00000000-0000-0000-0000-000000000001",
        version=3,
        position=3,
        occurred_at="2026-12-03T18:00:00+00:00",
        owner_id="ann",
        model=ModelFile(sha256=sha, filename="ring.stl", format="stl", size_bytes=len(model)),
        material=GOLD,
        labour_rates=list(LABOUR),
        quantity=1,
        currency="EUR",
    )


def priced(store: LocalBlobStore, model: bytes) -> PricingResultV1:
    worker = PricingWorker(MemoryTransport(), store, previews=store)
    return worker.price(request_for(store, model))


def test_a_quote_names_its_stored_preview(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    result = priced(store, binary_stl(ring(1.0, 1.0)))
    assert result.quote is not None
    sha = result.quote.preview_sha256
    assert sha is not None and result.preview_sha256 is None
    content = store.read_preview(sha)
    assert content[:4] == b"glTF" and hashlib.sha256(content).hexdigest() == sha
    # a redelivered request makes the same preview, stored once
    assert priced(store, binary_stl(ring(1.0, 1.0))).quote.preview_sha256 == sha  # type: ignore[union-attr]


def test_a_too_thin_model_is_rejected_with_its_preview(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    result = priced(store, binary_stl(ring(1.0, 0.3)))
    assert result.rejection_code == "too_thin" and result.quote is None
    assert result.preview_sha256 is not None
    assert store.read_preview(result.preview_sha256)[:4] == b"glTF"


def test_a_preview_that_would_not_fit_in_the_time_left_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_module, "PREVIEW_SECONDS_WITHIN_BUDGET", 1e6)
    result = priced(LocalBlobStore(tmp_path), binary_stl(ring(1.0, 1.0)))
    assert result.quote is not None and result.quote.preview_sha256 is None


def test_a_preview_that_fails_leaves_the_quote_as_it_is(tmp_path: Path) -> None:
    result = priced(FullDisk(tmp_path), binary_stl(ring(1.0, 1.0)))
    assert result.quote is not None and result.quote.preview_sha256 is None
    assert result.quote.total_minor > 0
