"""The MES console (/console/) in a real headless Chromium against `backbone up`.

Operators see approved orders newest first, filter and search them, watch changes arrive live, race to
take an order (exactly one wins, the other is told who did) and work their own orders to shipping; sellers
see a quote's breakdown and approve or cancel it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import psycopg
import pytest

from backbone.database import eventsourcing_env
from http_edge.identity import mint_token
from orders_core.actors import Actor
from orders_core.application import OrdersApplication
from orders_core.commands import RecordQuote, StartManufacturing
from orders_core.lifecycle import Role
from tests.conftest import JWT_SECRET, RunningApi
from tests.meshes import cube_stl
from tests.orders import quote_for

playwright_api = pytest.importorskip("playwright.sync_api")
Browser = playwright_api.Browser
Page = playwright_api.Page
expect = playwright_api.expect

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PRICING = Actor(Role.SERVICE, "pricing")
SCREENSHOTS = Path("/tmp")

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
expect.set_options(timeout=10_000)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def store(system: RunningApi) -> Iterator[OrdersApplication]:
    app = OrdersApplication(env=eventsourcing_env(system.database_url, pool_size=2))
    yield app
    app.close()


@pytest.fixture(scope="module")
def customer(system: RunningApi) -> Iterator[httpx.Client]:
    with system.client("customer", "ann") as c:
        yield c


@pytest.fixture(scope="module")
def seller(system: RunningApi) -> Iterator[httpx.Client]:
    with system.client("seller", "sam") as c:
        yield c


@pytest.fixture
def open_console(browser: Browser, system: RunningApi) -> Iterator[Any]:
    """Signs a new browser context in as `role`/`sub` and returns its page; closes them after the test.

    Any uncaught script error on a page fails the test.
    """
    contexts = []
    errors: list[str] = []

    def signed_in(role: str, sub: str, address: str = "/console/") -> Page:
        context = browser.new_context(viewport={"width": 1440, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(system.base_url + address)
        page.fill("#token", mint_token(JWT_SECRET, Role(role), sub))
        page.click("#signin-button")
        expect(page.get_by_test_id("whoami")).to_have_text(f"{sub} ({role})")
        expect(page.get_by_test_id("live-status")).to_have_text("live")
        return page

    yield signed_in
    for context in contexts:
        context.close()
    assert not errors, errors


def priced(customer: httpx.Client, store: OrdersApplication, **fields: Any) -> dict:
    """An order waiting for a seller's approval (PRICE_CALCULATED), as the write side holds it.

    The system's own pricing workers may quote the model first; otherwise the test quotes it itself.
    """
    body = {"contact_name": "Ann Example", "item_title": "Signet ring", "material_code": "AU750", **fields}
    order = customer.post("/orders", json=body).json()
    customer.put(
        f"/orders/{order['order_id']}/model", content=cube_stl(), headers={"Content-Type": "model/stl"}
    )
    sent = customer.post(f"/orders/{order['order_id']}/submit").json()
    store.execute(
        order["order_id"], RecordQuote(quote_for(sent["model"]["sha256"], total_minor=1_234_567)), PRICING
    )
    deadline = time.monotonic() + 10
    while (now := customer.get(f"/orders/{order['order_id']}").json())["status"] == "SUBMITTED":
        assert time.monotonic() < deadline, "the order was never priced"
        time.sleep(0.05)
    assert now["status"] == "PRICE_CALCULATED", now
    return dict(now)


def money(minor: int, currency: str) -> str:
    """How the console writes an amount of a currency with cents."""
    assert currency in {"EUR", "USD", "GBP", "CHF"}
    return f"{minor // 100:,}.{minor % 100:02d} {currency}"


def approved(customer: httpx.Client, seller: httpx.Client, store: OrdersApplication, **fields: Any) -> dict:
    """An order in MANUFACTURING_APPROVED, waiting for an operator."""
    order = priced(customer, store, **fields)
    response = seller.post(f"/orders/{order['order_id']}/approve")
    assert response.status_code == 200, response.text
    return dict(response.json())


def row(page: Page, number: str) -> Any:
    return page.locator(f'tr[data-testid="order-row"][data-number="{number}"]')


def numbers_shown(page: Page) -> list[str]:
    return list(
        page.locator('tr[data-testid="order-row"]').evaluate_all("rs => rs.map(r => r.dataset.number)")
    )


def unique(word: str) -> str:
    return f"{word} {uuid4().hex[:8]}"


def test_signing_in_shows_who_is_signed_in_and_survives_a_reload(open_console: Any) -> None:
    page = open_console("operator", "olga")
    expect(page.get_by_test_id("tab-queue")).to_have_attribute("aria-pressed", "true")
    page.reload()
    expect(page.get_by_test_id("whoami")).to_have_text("olga (operator)")


def test_a_bad_token_gets_a_clear_message(browser: Browser, system: RunningApi) -> None:
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(f"{system.base_url}/console")  # without the slash: the page redirects to /console/
        expect(page).to_have_url(f"{system.base_url}/console/")
        page.fill("#token", "not-a-token")
        page.click("#signin-button")
        expect(page.get_by_test_id("signin-error")).to_contain_text("not a JWT")
        page.fill("#token", mint_token("some-other-secret-" + "y" * 40, Role.OPERATOR, "mallory"))
        page.click("#signin-button")
        expect(page.get_by_test_id("signin-error")).to_contain_text("The server refused this token")
        expect(page.locator("#app-view")).to_be_hidden()
        page.fill("#token", mint_token(JWT_SECRET, Role.CUSTOMER, "ann"))
        page.click("#signin-button")
        expect(page.get_by_test_id("signin-error")).to_contain_text("for operators and sellers")
    finally:
        context.close()


def test_the_queue_lists_the_earliest_promised_first_and_the_newest_approved_a_click_away(
    open_console: Any, customer: httpx.Client, seller: httpx.Client, store: OrdersApplication
) -> None:
    today = datetime.now(UTC).date()
    made = [
        approved(customer, seller, store, promised_date=str(today + timedelta(days=d)))["number"]
        for d in (2, 5, 9)
    ]
    page = open_console("operator", "olga")
    for number in made:
        expect(row(page, number)).to_have_attribute("data-status", "MANUFACTURING_APPROVED")
    shown = numbers_shown(page)
    assert [shown.index(n) for n in made] == sorted(shown.index(n) for n in made)
    statuses = page.locator('tr[data-testid="order-row"]').evaluate_all("rs => rs.map(r => r.dataset.status)")
    assert set(statuses) == {"MANUFACTURING_APPROVED"}
    expect(page.locator("#f-sort")).to_have_value("due")

    page.select_option("#f-sort", "approved")
    page.get_by_test_id("apply").click()
    expect(page.locator('tr[data-testid="order-row"]').first).to_have_attribute("data-number", made[-1])
    shown = numbers_shown(page)
    assert [shown.index(n) for n in reversed(made)] == sorted(shown.index(n) for n in made)


def test_a_filter_and_the_search_box_narrow_the_table(
    open_console: Any, customer: httpx.Client, seller: httpx.Client, store: OrdersApplication
) -> None:
    title = unique("<b>Filigree</b> brooch")
    silver = approved(customer, seller, store, material_code="AG925", item_title=title)
    gold = approved(customer, seller, store, material_code="AU750")
    page = open_console("operator", "olga")
    expect(row(page, gold["number"])).to_be_visible()

    page.fill("#f-material", "AG925")
    page.press("#f-material", "Enter")
    expect(row(page, gold["number"])).to_have_count(0)
    expect(row(page, silver["number"])).to_be_visible()
    materials = page.locator('[data-col="material"]').all_inner_texts()
    assert set(materials) == {"AG925"}

    page.fill("#f-material", "")
    page.press("#f-material", "Enter")
    expect(row(page, gold["number"])).to_be_visible()
    page.fill("#f-q", title.split()[-1])
    expect(page.locator('tr[data-testid="order-row"]')).to_have_count(1)
    expect(row(page, silver["number"]).locator('[data-col="item"]')).to_have_text(title)
    expect(row(page, silver["number"]).locator('[data-col="item"] b')).to_have_count(0)  # text, not markup


def test_more_loads_the_next_keyset_page_below_the_first(
    open_console: Any, customer: httpx.Client, seller: httpx.Client, store: OrdersApplication
) -> None:
    for _ in range(3):
        approved(customer, seller, store)
    page = open_console("operator", "olga", "/console/?limit=2")
    rows = page.locator('tr[data-testid="order-row"]')
    expect(rows).to_have_count(2)
    first_page = numbers_shown(page)
    page.get_by_test_id("more").click()
    expect(rows).to_have_count(4)
    shown = numbers_shown(page)
    assert shown[:2] == first_page and len(set(shown)) == 4


def test_changes_through_the_api_appear_without_a_reload(
    open_console: Any,
    system: RunningApi,
    customer: httpx.Client,
    seller: httpx.Client,
    store: OrdersApplication,
) -> None:
    page = open_console("operator", "olga")
    page.evaluate("window.notReloaded = true")

    today = str(datetime.now(UTC).date())  # due today: the first in the queue, earliest promised first
    fresh = approved(customer, seller, store, item_title=unique("Live ring"), promised_date=today)
    expect(row(page, fresh["number"])).to_have_attribute("data-status", "MANUFACTURING_APPROVED")
    assert numbers_shown(page)[0] == fresh["number"]

    with system.client("operator", "otto") as otto:
        assert otto.post(f"/orders/{fresh['order_id']}/take").status_code == 200
    expect(row(page, fresh["number"])).to_have_count(0)  # taken: no longer waiting in the queue
    page.get_by_test_id("tab-all").click()
    expect(row(page, fresh["number"]).locator('[data-col="operator"]')).to_have_text("otto")
    assert page.evaluate("window.notReloaded") is True


def test_two_operators_race_to_take_one_order_and_exactly_one_wins(
    open_console: Any,
    system: RunningApi,
    customer: httpx.Client,
    seller: httpx.Client,
    store: OrdersApplication,
) -> None:
    pages = {sub: open_console("operator", sub) for sub in ("ada", "bob")}
    order = approved(customer, seller, store, item_title=unique("Contested pendant"))
    take = f'tr[data-number="{order["number"]}"] button[data-action="take"]'
    for page in pages.values():
        expect(page.locator(take)).to_be_enabled()

    # Both pages click at the same wall-clock moment (one browser, one clock), not one after the other.
    at = pages["ada"].evaluate("Date.now() + 300")
    for page in pages.values():
        page.evaluate(
            "([selector, at]) => setTimeout(() => document.querySelector(selector).click(), at - Date.now())",
            [take, at],
        )
    said = {}
    for sub, page in pages.items():
        notice = page.get_by_test_id("notice")
        expect(notice).to_have_text(re.compile("You took|already taken by"))
        said[sub] = notice.inner_text()

    winners = [sub for sub, text in said.items() if "You took" in text]
    assert len(winners) == 1, said
    (winner,) = winners
    (loser,) = set(pages) - {winner}
    assert f"already taken by {winner}" in said[loser]
    assert pages[loser].get_by_test_id("notice").get_attribute("data-taken-by") == winner
    with system.client("operator", "ada") as ada:
        assert ada.get(f"/orders/{order['order_id']}").json()["operator_id"] == winner


def test_an_operator_completes_packages_and_ships_their_order(
    open_console: Any, customer: httpx.Client, seller: httpx.Client, store: OrdersApplication
) -> None:
    order = approved(customer, seller, store, item_title=unique("Tennis bracelet"))
    page = open_console("operator", "olga")
    the_row = row(page, order["number"])
    the_row.locator('button[data-action="take"]').click()
    expect(page.get_by_test_id("notice")).to_contain_text(f"You took {order['number']}")

    page.get_by_test_id("tab-mine").click()
    expect(the_row).to_have_attribute("data-status", "MANUFACTURING_STARTED")
    expect(the_row.locator('[data-col="operator"]')).to_have_text("olga (you)")
    page.screenshot(path=str(SCREENSHOTS / "console-operator.png"), full_page=True)

    the_row.locator('button[data-action="complete"]').click()
    expect(the_row).to_have_attribute("data-status", "MANUFACTURING_COMPLETED")
    the_row.locator('button[data-action="package"]').click()
    expect(the_row).to_have_attribute("data-status", "PACKAGING")
    the_row.locator('button[data-action="ship"]').click()
    page.fill("#ship-carrier", "DHL")
    page.fill("#ship-tracking", "JD014600")
    page.get_by_test_id("ship-submit").click()
    expect(page.get_by_test_id("ship-dialog")).to_be_hidden()
    expect(the_row).to_have_attribute("data-status", "SHIPPED")
    expect(page.get_by_test_id("notice")).to_contain_text("shipped with DHL, tracking JD014600")
    expect(the_row.locator("button[data-action]")).to_have_count(0)


def test_money_is_written_from_minor_units_with_the_currency_s_own_decimals(open_console: Any) -> None:
    page = open_console("seller", "sam")
    written = page.evaluate(
        """() => [[1234567, "EUR"], [5, "EUR"], [0, "USD"], [1234567, "JPY"], [1234567, "BHD"],
                  [9007199254740991, "EUR"]].map(([m, c]) => window.alexandriteConsole.formatMoney(m, c))"""
    )
    assert written == [
        "12,345.67 EUR",
        "0.05 EUR",
        "0.00 USD",
        "1,234,567 JPY",
        "1,234.567 BHD",
        "90,071,992,547,409.91 EUR",
    ]


def test_a_seller_sees_the_quote_breakdown_and_approves(
    open_console: Any, customer: httpx.Client, store: OrdersApplication
) -> None:
    order = priced(customer, store, item_title=unique("Cocktail ring"))
    quote = order["quote"]
    page = open_console("seller", "sam")
    expect(page.get_by_test_id("tab-quotes")).to_have_attribute("aria-pressed", "true")
    the_row = row(page, order["number"])
    expect(the_row.locator('[data-col="quote"]')).to_have_text(money(quote["total_minor"], quote["currency"]))

    the_row.get_by_test_id("open").click()
    detail = page.get_by_test_id("order-detail")
    expect(detail.get_by_test_id("quote-line")).to_have_count(len(quote["lines"]))
    for line in quote["lines"]:
        shown = detail.locator(f'[data-code="{line["code"]}"]')
        expect(shown).to_contain_text(line["label"])
        expect(shown).to_contain_text(money(line["amount_minor"], quote["currency"]))
    expect(detail.get_by_test_id("quote-total")).to_have_text(money(quote["total_minor"], quote["currency"]))
    expect(detail.locator('[data-event="PriceCalculated"]')).to_be_visible()
    page.screenshot(path=str(SCREENSHOTS / "console-seller.png"), full_page=True)

    detail.get_by_test_id("detail-action-approve").click()
    expect(page.get_by_test_id("notice")).to_contain_text(f"{order['number']} approved")
    expect(the_row).to_have_count(0)  # no longer waiting for approval
    expect(detail.locator('[data-event="ManufacturingApproved"]')).to_contain_text("by seller sam")
    expect(detail.get_by_test_id("detail-action-approve")).to_have_count(0)


def test_a_seller_cancels_a_quote_with_a_reason(
    open_console: Any, customer: httpx.Client, store: OrdersApplication
) -> None:
    order = priced(customer, store, item_title=unique("Unwanted ring"))
    page = open_console("seller", "sam")
    the_row = row(page, order["number"])
    the_row.locator('button[data-action="cancel"]').click()
    page.get_by_test_id("cancel-submit").click()
    expect(page.locator("#cancel-error")).to_contain_text("Give a reason")
    page.fill("#cancel-reason", "The customer asked us to stop")
    page.get_by_test_id("cancel-submit").click()
    expect(page.get_by_test_id("notice")).to_contain_text(f"{order['number']} cancelled")
    expect(the_row).to_have_count(0)
    with system_client(page) as seller:
        body = seller.get(f"/orders/{order['order_id']}").json()
    assert (body["status"], body["cancellation_reason"]) == ("CANCELLED", "The customer asked us to stop")


def system_client(page: Page) -> httpx.Client:
    """An httpx client with the token the page signed in with, against the page's server."""
    token = page.evaluate("sessionStorage.getItem('alexandrite.console.token')")
    base = page.evaluate("location.origin")
    return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def test_an_order_the_view_could_not_update_wears_a_stale_badge(
    open_console: Any,
    system: RunningApi,
    customer: httpx.Client,
    seller: httpx.Client,
    store: OrdersApplication,
) -> None:
    """A change the MES projector cannot apply (a constraint it breaks, as a bad migration would) parks the
    order: the operator sees it marked stale, with why and since when, while other orders keep coming."""
    order = approved(customer, seller, store, item_title=unique("Stale ring"))
    # The page shows the row before it is parked: the mark changes no version, yet the row must show it.
    page = open_console("operator", "olga")
    expect(row(page, order["number"])).to_be_visible()
    with psycopg.connect(system.database_url, autocommit=True) as conn:
        conn.execute(
            "ALTER TABLE mes.orders ADD CONSTRAINT stale_test "
            "CHECK (operator_id IS DISTINCT FROM 'stale-op') NOT VALID"
        )
    try:
        store.execute(order["order_id"], StartManufacturing(), Actor(Role.OPERATOR, "stale-op"))
        later = approved(customer, seller, store)  # applies after it: the view itself is sound
        expect(row(page, later["number"])).to_be_visible()
        badge = row(page, order["number"]).get_by_test_id("parked")
        expect(badge).to_be_visible()
        expect(badge).to_contain_text("stale since")
        assert "stale_test" in (badge.get_attribute("title") or "")
        page.screenshot(path=str(SCREENSHOTS / "console-stale.png"), full_page=True)
    finally:
        with psycopg.connect(system.database_url, autocommit=True) as conn:
            conn.execute("ALTER TABLE mes.orders DROP CONSTRAINT stale_test")
        retried = system.backbone("projections", "retry", "mes")
    assert retried.returncode == 0, retried.stdout + retried.stderr
