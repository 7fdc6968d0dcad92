"""Holds in the console, in headless Chromium against `backbone up`: an operator puts an order on hold with
a reason, it leaves the queue and shows why under "on hold", and a release brings it back."""

from __future__ import annotations

from typing import Any

import httpx

from orders_core.application import OrdersApplication
from tests.browser.test_console import (  # noqa: F401 - fixtures, used by name
    approved,
    browser,
    customer,
    expect,
    open_console,
    row,
    seller,
    store,
    unique,
)


def test_an_operator_holds_an_order_with_a_reason_and_releases_it(
    open_console: Any,  # noqa: F811 - the fixture imported above
    customer: httpx.Client,  # noqa: F811
    seller: httpx.Client,  # noqa: F811
    store: OrdersApplication,  # noqa: F811
) -> None:
    order = approved(customer, seller, store, item_title=unique("Sapphire ring"))
    number = order["number"]
    page = open_console("operator", "hana")
    the_row = row(page, number)
    the_row.get_by_test_id("action-hold").click()
    dialog = page.get_by_test_id("hold-dialog")
    dialog.get_by_test_id("hold-submit").click()  # no reason: the dialog asks for one
    expect(dialog.locator("#hold-error")).to_contain_text("Say why it waits")
    dialog.get_by_test_id("hold-reason").fill("awaiting material: 2 mm sapphires")
    dialog.get_by_test_id("hold-submit").click()
    expect(page.get_by_test_id("notice")).to_contain_text(f"{number} is on hold: awaiting material")
    expect(the_row).to_have_count(0)  # out of the queue
    assert (
        customer.get(f"/orders/{order['order_id']}").json()["hold_reason"]
        == "awaiting material: 2 mm sapphires"
    )

    expect(page.locator('[data-stat="held"]')).not_to_have_text("0")
    page.locator('[data-stat="held"] button').click()  # the board's "On hold" lists the held orders
    held_row = row(page, number)
    expect(held_row.get_by_test_id("held")).to_contain_text("on hold: awaiting material: 2 mm sapphires")
    expect(held_row.get_by_test_id("action-take")).to_have_count(0)
    held_row.get_by_test_id("open").click()
    detail = page.get_by_test_id("order-detail")
    expect(detail.locator('[data-fact="on hold"]')).to_contain_text("awaiting material: 2 mm sapphires")

    detail.get_by_test_id("detail-action-release").click()
    expect(page.get_by_test_id("notice")).to_contain_text(f"{number} released")
    expect(detail.locator('[data-event="OrderReleased"]')).to_contain_text("by operator hana")
    page.get_by_test_id("tab-queue").click()
    expect(row(page, number).get_by_test_id("action-take")).to_be_visible()
