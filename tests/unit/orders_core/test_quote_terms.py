"""A quote holds its terms: approving after it expired is refused and offers a re-price (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from orders_core.commands import ApproveManufacturing, AttachModel, RecordQuote, RepriceOrder, SubmitOrder
from orders_core.lifecycle import Status
from orders_core.order import Order
from orders_core.outcomes import Refused
from orders_core.values import QUOTE_VALIDITY, Quote
from tests.orders import OPERATOR, OWNER, PARTNER, PRICING, SELLER, STRANGER, model_file, new_order, quote_for


def now() -> datetime:
    return datetime.now(UTC)


def priced(valid_until: datetime | None) -> Order:
    order = new_order()
    model = model_file()
    for command, actor in (
        (AttachModel(model), OWNER),
        (SubmitOrder(), OWNER),
        (RecordQuote(terms(quote_for(model.sha256), valid_until), submission=3), PRICING),
    ):
        assert order.execute(command, actor) is None
    return order


def terms(quote: Quote, valid_until: datetime | None) -> Quote:
    return msgspec.structs.replace(quote, valid_until=valid_until)


def test_a_quote_that_holds_is_approved() -> None:
    order = priced(now() + timedelta(minutes=5))
    assert order.execute(ApproveManufacturing(), SELLER) is None
    assert order.status is Status.MANUFACTURING_APPROVED


def test_approving_an_expired_quote_is_refused_saying_so_and_offering_a_re_price() -> None:
    expired = now() - timedelta(seconds=1)
    order = priced(expired)
    order.collect_events()
    refusal = order.execute(ApproveManufacturing(), SELLER)
    assert refusal is not None and refusal.code is Refused.QUOTE_EXPIRED
    assert "expired" in refusal.reason and f"/orders/{order.id}/reprice" in refusal.reason
    assert refusal.details == {"valid_until": expired.isoformat(), "reprice": f"/orders/{order.id}/reprice"}
    assert refusal.status is Status.PRICE_CALCULATED
    assert "RepriceOrder" in refusal.allowed
    assert order.status is Status.PRICE_CALCULATED and order.collect_events() == []


def test_a_quote_stored_without_terms_holds_for_the_default_validity_from_when_it_was_recorded() -> None:
    order = priced(None)
    recorded = order.entered_at[Status.PRICE_CALCULATED.value]
    assert order.quote is not None and order.quote.valid_until == recorded + QUOTE_VALIDITY


@pytest.mark.parametrize("actor", [OWNER, SELLER])
def test_the_owner_or_a_seller_re_prices_the_same_model_as_a_new_submission(actor: object) -> None:
    order = priced(now() - timedelta(hours=1))
    assert order.quote is not None
    model = order.quote.model_sha256
    assert order.execute(RepriceOrder(), actor) is None  # type: ignore[arg-type]
    assert order.status is Status.SUBMITTED and order.quote is None
    assert order.submitted_version == order.version
    # The answer to the first submission is stale now; the answer to the re-price is recorded.
    late = order.execute(RecordQuote(quote_for(model, 999), submission=2), PRICING)
    assert late is not None and late.code is Refused.NOT_ALLOWED
    fresh = terms(quote_for(model, 456_78), now() + QUOTE_VALIDITY)
    assert order.execute(RecordQuote(fresh, submission=order.version), PRICING) is None
    assert order.quote is not None and order.quote.total_minor == 456_78
    assert order.execute(ApproveManufacturing(), SELLER) is None


@pytest.mark.parametrize("actor", [OPERATOR, PARTNER, STRANGER])
def test_nobody_else_re_prices(actor: object) -> None:
    order = priced(now())
    refusal = order.execute(RepriceOrder(), actor)  # type: ignore[arg-type]
    assert refusal is not None and refusal.code is Refused.FORBIDDEN
    assert order.status is Status.PRICE_CALCULATED


def test_only_a_priced_order_is_re_priced() -> None:
    order = new_order()
    refusal = order.execute(RepriceOrder(), SELLER)
    assert refusal is not None and refusal.code is Refused.NOT_ALLOWED
    assert "RepriceOrder is not allowed in status INITIATED" in refusal.reason
