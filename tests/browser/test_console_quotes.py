"""The console and a quote's term, in headless Chromium against `backbone up` whose quotes hold 40 s: a
seller sees the quote about to expire, is asked before approving at its price, and is offered the re-price
once it has expired."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.browser.test_console import (  # noqa: F401 - fixtures, used by name
    browser,
    expect,
    open_console,
    row,
    unique,
)
from tests.conftest import PostgresServer, RunningApi, serve
from tests.journeys import answered, submit
from tests.meshes import cube_stl

VALID_SECONDS = 40.0


@pytest.fixture(scope="module")
def system(postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApi]:
    yield from serve(postgres, tmp_path_factory, "up", QUOTE_VALID_HOURS=str(VALID_SECONDS / 3600))


def test_a_seller_is_warned_before_approving_a_quote_about_to_expire_and_offered_a_re_price_after(
    system: RunningApi,
    open_console: Any,  # noqa: F811 - the fixture imported above
) -> None:
    title = unique("Term ring")
    with system.client("customer", "tess") as customer:
        order = answered(customer, submit(customer, cube_stl(10.0), item_title=title))
        order_id, number = order["order_id"], order["number"]
        valid_until = datetime.fromisoformat(order["quote"]["valid_until"])

        page = open_console("seller", "sid")
        the_row = row(page, number)
        expect(the_row.get_by_test_id("quote-expiring")).to_contain_text("expires in")
        the_row.get_by_test_id("open").click()
        detail = page.get_by_test_id("order-detail")
        expect(detail.locator('[data-fact="quote holds"]')).to_contain_text("holds")
        expect(detail.get_by_test_id("quote-figures")).to_contain_text("catalog v")

        asked: list[str] = []
        page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
        the_row.get_by_test_id("action-approve").click()
        deadline = time.monotonic() + 10
        while not asked and time.monotonic() < deadline:
            page.wait_for_timeout(50)
        assert asked and "expires in" in asked[0] and "Approve at this price?" in asked[0], asked
        assert customer.get(f"/orders/{order_id}").json()["status"] == "PRICE_CALCULATED"  # dismissed

        # Once expired, approving offers the re-price instead; accepted, the order is priced anew.
        time.sleep(max(0.0, (valid_until - datetime.now(UTC)).total_seconds()) + 0.5)
        page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
        detail.get_by_test_id("detail-action-approve").click()
        expect(page.get_by_test_id("notice")).to_contain_text(f"{number} is being priced again")
        assert "expired" in asked[1] and "Re-price it at today's catalog now?" in asked[1], asked
        repriced = answered(customer, order_id)
        assert repriced["status"] == "PRICE_CALCULATED"
        assert datetime.fromisoformat(repriced["quote"]["valid_until"]) > valid_until
        events = [e["event"] for e in customer.get(f"/orders/{order_id}/history").json()]
        assert events.count("PriceCalculated") == 2 and "ManufacturingApproved" not in events

        # The new quote holds 40 s: approving under it asks, and goes through when accepted.
        page.reload()
        expect(page.get_by_test_id("live-status")).to_have_text("live")
        page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
        row(page, number).get_by_test_id("action-approve").click()
        expect(page.get_by_test_id("notice")).to_contain_text(f"{number} approved")
        assert "expires in" in asked[2], asked
        assert customer.get(f"/orders/{order_id}").json()["status"] == "MANUFACTURING_APPROVED"
