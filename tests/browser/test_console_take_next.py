"""Take next in the console, in headless Chromium against `backbone up`: two operators press it at the same
moment and each gets an order of their own; with nothing left, the console says so. The queue shows what
the operator's profile offers, as take-next does."""

from __future__ import annotations

import re
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
from tests.conftest import RunningApi


def test_two_operators_take_next_at_once_and_each_gets_an_order_of_their_own(
    open_console: Any,  # noqa: F811 - the fixture imported above
    customer: httpx.Client,  # noqa: F811
    seller: httpx.Client,  # noqa: F811
    store: OrdersApplication,  # noqa: F811
) -> None:
    made = {approved(customer, seller, store, item_title=unique("Next ring"))["number"] for _ in range(2)}
    pages = {sub: open_console("operator", sub) for sub in ("ivy", "jon")}
    for page in pages.values():
        expect(page.get_by_test_id("take-next")).to_be_visible()
        expect(page.locator('tr[data-testid="order-row"]')).to_have_count(2)
    at = pages["ivy"].evaluate("Date.now() + 300")
    for page in pages.values():  # the same wall-clock moment on both pages
        page.evaluate(
            "(at) => setTimeout(() => document.querySelector('#take-next').click(), at - Date.now())", at
        )
    taken = {}
    for sub, page in pages.items():
        notice = page.get_by_test_id("notice")
        expect(notice).to_have_text(re.compile(r"You took A-\d+"))
        taken[sub] = re.search(r"A-\d+", notice.inner_text()).group(0)  # type: ignore[union-attr]
        expect(page.get_by_test_id("order-detail")).to_be_visible()
    assert set(taken.values()) == made, taken  # one each, none twice

    pages["ivy"].get_by_test_id("take-next").click()
    expect(pages["ivy"].get_by_test_id("notice")).to_contain_text("Nothing is waiting for you")


def test_take_next_is_an_operators_button(open_console: Any) -> None:  # noqa: F811
    page = open_console("seller", "sal")
    expect(page.get_by_test_id("take-next")).to_be_hidden()


def test_the_queue_shows_what_the_operators_profile_offers_and_nothing_when_it_offers_nothing(
    open_console: Any,  # noqa: F811
    customer: httpx.Client,  # noqa: F811
    seller: httpx.Client,  # noqa: F811
    store: OrdersApplication,  # noqa: F811
    system: RunningApi,
) -> None:
    gold = approved(customer, seller, store, item_title=unique("Gold band"), material_code="AU750")
    palladium = approved(customer, seller, store, item_title=unique("Palladium band"), material_code="PD950")
    with system.client("operator", "kit") as kit:
        assert kit.put("/operators/kit/materials", json={"materials": ["PD950"]}).status_code == 200
        page = open_console("operator", "kit")
        expect(page.get_by_test_id("queue-note")).to_contain_text("Your profile: PD950")
        expect(page.get_by_test_id("filter-material")).to_have_value("PD950")
        expect(row(page, palladium["number"])).to_have_count(1)
        expect(row(page, gold["number"])).to_have_count(0)
        page.get_by_test_id("filter-material").fill("")  # every material, one edit away
        page.get_by_test_id("filter-material").press("Enter")
        expect(row(page, gold["number"])).to_have_count(1)

        catalog = seller.get("/catalog").json()
        material = next(m for m in catalog["materials"] if m["code"] == "PD950")
        fields = {k: v for k, v in material.items() if k != "code"}
        try:
            assert seller.put(
                "/catalog/materials/PD950", json={**fields, "work_centre": "KIT-BENCH"}
            ).is_success
            assert kit.put("/operators/kit/work-centres", json={"work_centres": ["KIT-BENCH"]}).is_success
            declared = kit.put("/operators/kit/materials", json={"materials": []})  # the bench alone
            assert declared.status_code == 200 and declared.json()["works"] == ["PD950"], declared.text
            assert seller.put("/catalog/materials/PD950", json={**fields, "work_centre": None}).is_success
            assert kit.get("/operators/kit").json()["works"] == []  # the bench makes nothing now
            page.reload()
            expect(page.get_by_test_id("queue-note")).to_contain_text("offer no material now")
            expect(page.get_by_test_id("filter-material")).to_have_value("")
            expect(page.locator('tr[data-testid="order-row"]')).to_have_count(0)
            page.get_by_test_id("take-next").click()
            expect(page.get_by_test_id("notice")).to_contain_text("Nothing is waiting for you")
        finally:
            seller.put("/catalog/materials/PD950", json=fields)
