"""The operators' queue by urgency, in headless Chromium against `backbone up`: most urgent first, each row
saying why, late to start in red."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from orders_core.application import OrdersApplication
from tests.browser.test_console import (  # noqa: F401 - fixtures, used by name
    approved,
    browser,
    customer,
    expect,
    numbers_shown,
    open_console,
    row,
    seller,
    store,
    unique,
)


def test_most_urgent_first_lists_the_least_slack_first_and_says_why(
    open_console: Any,  # noqa: F811 - the fixture imported above
    customer: httpx.Client,  # noqa: F811
    seller: httpx.Client,  # noqa: F811
    store: OrdersApplication,  # noqa: F811
) -> None:
    today = datetime.now(UTC).date()
    title = unique("Urgent ring")
    # Made in the reverse of their urgency: the newest approved is the most urgent.
    made = {
        days: approved(customer, seller, store, item_title=title, promised_date=str(today + timedelta(days)))
        for days in (20, 6, 1)
    }
    page = open_console("operator", "uma")
    page.fill("#f-q", title)
    page.select_option("#f-sort", "urgency")  # least slack first
    page.get_by_test_id("apply").click()
    expect(row(page, made[20]["number"])).to_be_visible()
    assert numbers_shown(page) == [made[d]["number"] for d in (1, 6, 20)]

    soonest = row(page, made[1]["number"]).locator('[data-col="urgency"]')
    expect(soonest).to_contain_text("due in")
    expect(soonest).to_contain_text("needs 2 d")  # two days of manufacturing, due tomorrow: late to start
    expect(soonest).to_have_class("urgent late")
    expect(row(page, made[6]["number"]).locator('[data-col="urgency"]')).to_have_text("due in 6 d")
    expect(row(page, made[20]["number"]).locator('[data-col="urgency"]')).to_have_text("due in 20 d")

    # Earliest promised first lists them the same way here (one material, one estimate).
    page.select_option("#f-sort", "due")
    page.get_by_test_id("apply").click()
    expect(page.locator('tr[data-testid="order-row"]').first).to_have_attribute(
        "data-number", made[1]["number"]
    )
    assert numbers_shown(page) == [made[d]["number"] for d in (1, 6, 20)]
