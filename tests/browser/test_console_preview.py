"""The console's order detail shows the model in 3D (three.js, WebGL) coloured by wall thickness, in a real
headless Chromium against `backbone up`, whose own pricing makes the previews. Chromium draws WebGL with
SwiftShader (no GPU); the pixels are counted in a screenshot of the canvas."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.browser.test_console import (
    CHROMIUM,
    CHROMIUM_ARGS,
    SCREENSHOTS,
    customer,
    open_console,
    row,
    unique,
)
from tests.conftest import RunningApi
from tests.journeys import answered, submit
from tests.unit.pricing.solids import binary_stl, ring

playwright_api = pytest.importorskip("playwright.sync_api")
Browser = playwright_api.Browser
Page = playwright_api.Page
expect = playwright_api.expect

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
WEBGL_ARGS = [*CHROMIUM_ARGS, "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]
"""Chromium renders WebGL in software with SwiftShader: said outright, as newer builds no longer fall back
to it by themselves."""
BACKGROUND = np.array([0xF5, 0xF6, 0xF8])

__all__ = ["customer", "open_console"]  # fixtures shared with the console's other tests


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=WEBGL_ARGS)
        yield chromium
        chromium.close()


def shown(page: Page, customer: httpx.Client, model: bytes, title: str) -> tuple[dict[str, Any], np.ndarray]:
    """Submit `model` for pricing, open the order in the console and return it and the canvas' pixels."""
    order_id = submit(customer, model, item_title=title)
    order = answered(customer, order_id)
    page.get_by_test_id("tab-all").click()
    the_row = row(page, order["number"])
    expect(the_row).to_have_count(1)
    the_row.get_by_test_id("open").click()
    view = page.get_by_test_id("preview-view")
    expect(view).to_have_attribute("data-ready", "true", timeout=30_000)
    canvas = view.get_by_test_id("preview-canvas")
    expect(canvas).to_be_visible()
    picture = canvas.screenshot()
    pixels = np.asarray(Image.open(io.BytesIO(picture)).convert("RGB")).astype(int)
    return order, pixels


def drawn(pixels: np.ndarray) -> int:
    """Pixels that are not the background: the model."""
    return int((np.abs(pixels - BACKGROUND).sum(axis=2) > 24).sum())


def red(pixels: np.ndarray) -> int:
    """Pixels of the 'too thin' red, lit or shaded: red well above green and blue."""
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    return int(((r > 90) & (r > 2 * g) & (r > 2 * b)).sum())


def test_a_too_thin_prong_is_red_in_the_3d_view(open_console: Any, customer: httpx.Client) -> None:
    page = open_console("seller", "sam")
    order, pixels = shown(page, customer, binary_stl(ring(1.0, 0.3)), unique("Thin prong ring"))
    assert order["status"] == "REJECTED"
    page.screenshot(path=str(SCREENSHOTS / "console-preview-thin.png"), full_page=True)
    assert drawn(pixels) > 0.05 * pixels.shape[0] * pixels.shape[1], "the canvas is blank"
    print(f"thin prong: {drawn(pixels)} pixels drawn, {red(pixels)} red")
    assert red(pixels) > 30, "no thin-area red in the screenshot"
    legend = page.get_by_test_id("preview-legend")
    expect(legend.locator('[data-kind="thin"]')).to_contain_text("under 0.60 mm")


def test_a_sound_ring_is_drawn_without_red_beside_the_quote_s_wall_figures(
    open_console: Any, customer: httpx.Client, system: RunningApi
) -> None:
    page = open_console("seller", "sam")
    order, pixels = shown(page, customer, binary_stl(ring(1.0, 1.0)), unique("Sound ring"))
    assert order["status"] == "PRICE_CALCULATED"
    page.screenshot(path=str(SCREENSHOTS / "console-preview-sound.png"), full_page=True)
    assert drawn(pixels) > 0.05 * pixels.shape[0] * pixels.shape[1], "the canvas is blank"
    assert red(pixels) == 0
    figures = page.get_by_test_id("wall-figures")
    expect(figures.locator('[data-figure="thinnest wall"]')).to_have_text("1.00 mm")
    expect(figures.locator('[data-figure="analysis"]')).to_have_text("reliable")
    # the vendored three.js goes out as JavaScript, as module scripts must
    script = httpx.get(f"{system.base_url}/console/vendor/three/build/three.module.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
