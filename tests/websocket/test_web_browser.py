"""The web view in a real browser: Debian's chromium driven by Playwright (never
``playwright install``), against the fake Bybit. Playwright's sync API runs in one worker
thread; it calls back into trio (fake trades, a restart) with ``trio.from_thread``."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest
import trio
from server_process import free_port

from websocket.web_helpers import WEB_PIPE, Streamer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
KEY = "browser-key-0123456789"
#: Milliseconds any one wait in the browser may take.
WAIT_MS = 20_000

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason="needs Debian's chromium (scripts/test installs it)")


def log_in(page, key: str) -> None:
    page.wait_for_selector("#login-form", state="visible", timeout=WAIT_MS)
    page.fill("#login-user", "viewer")
    page.fill("#login-key", key)
    page.click("#login-submit")


@contextlib.contextmanager
def open_page(url: str, errors: list[str]) -> Iterator[Any]:
    """Chromium (a fresh profile) showing ``url``; console errors are appended to
    ``errors``."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as profile, sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1100, "height": 720})
        try:
            page = browser.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url)
            yield page
        finally:
            browser.close()


def browse(url: str, fake, streamer: Streamer) -> list[str]:
    """The whole browser session; returns the console errors seen."""
    from playwright.sync_api import expect

    errors: list[str] = []
    with open_page(url, errors) as page:
        # A wrong key: the login comes back with an error.
        log_in(page, "wrong")
        # (CSP forbids eval, so every wait is on a selector, never a JS predicate.)
        page.wait_for_selector("#login-error:has-text('Wrong user or key')",
                               timeout=WAIT_MS)
        assert page.is_visible("#login-form")
        # The right key: every source shows as connected.
        log_in(page, KEY)
        page.wait_for_selector('#sources tr[data-node="bybit"][data-state="connected"]',
                               timeout=WAIT_MS)
        page.wait_for_selector('#sinks tr[data-node="wss"]', timeout=WAIT_MS)
        # The market view: candles grow as the fake trades, quotes are the fake's tickers.
        page.click("#tab-market")
        now = trio.from_thread.run_sync(fake_now)
        # Each trade a minute after the one before closes the candle before it; the
        # aggregator may add candles of its own (gaps filled up to now), hence "at least".
        for i in range(4):
            trio.from_thread.run_sync(lambda i=i: fake.trade(
                "linear", "BTCUSDT", price=100 + i, size=1,
                ts=now - 300_000 + i * 60_000))
            if i:
                expect(page.locator("#chart")).to_have_attribute(
                    "data-candles", at_least(i), timeout=WAIT_MS)
        ticker = fake.ticker("linear", "BTCUSDT")
        expect(page.locator("#bid")).not_to_have_text("-", timeout=WAIT_MS)
        expect(page.locator("#ask")).not_to_have_text("-", timeout=WAIT_MS)
        assert float(page.text_content("#bid")) == float(ticker["bid1Price"])
        assert float(page.text_content("#ask")) == float(ticker["ask1Price"])
        assert page.get_attribute("#chart", "data-symbol") == "linear BTCUSDT"
        assert page.locator("#trades tbody tr").count() == 4
        # The streamer restarts: the page reconnects and keeps working.
        trio.from_thread.run(streamer.restart)
        page.wait_for_selector('#conn[data-state="live"]', timeout=WAIT_MS)
        trio.from_thread.run(lambda: fake.wait_subscribed("linear",
                                                          ["publicTrade.BTCUSDT"]))
        trio.from_thread.run_sync(lambda: fake.trade(
            "linear", "BTCUSDT", price=110, size=2, ts=now - 60_000))
        page.wait_for_selector("#trades tbody tr:first-child td.num:has-text('110.')",
                               timeout=WAIT_MS)
        page.click("#tab-status")
        page.wait_for_selector('#sources tr[data-node="bybit"][data-state="connected"]',
                               timeout=WAIT_MS)
    return errors


def at_least(n: int) -> re.Pattern[str]:
    """A pattern of the decimal numbers from ``n`` (1-9) up."""
    return re.compile(rf"^([{n}-9]|[1-9][0-9]+)$")


def fake_now() -> int:
    from streamer import clock

    return clock.now_ms()


async def test_web_view_in_chromium(fake_bybit, plugin_manager, nursery, monkeypatch) -> None:
    monkeypatch.setenv("STREAMER_WSS_AUTH_KEY", KEY)
    port = free_port()
    toml = WEB_PIPE.format(ws=fake_bybit.ws_url("linear"), rest=fake_bybit.rest_url, port=port)
    streamer = Streamer(toml, plugin_manager)
    with trio.fail_after(100):
        await streamer.start(nursery)
        await fake_bybit.wait_subscribed("linear", ["publicTrade.BTCUSDT"])
        errors = await trio.to_thread.run_sync(
            browse, f"http://127.0.0.1:{port}/", fake_bybit, streamer)
        await streamer.stop()
    # A refused login logs its close as no error; anything else would be a page fault.
    assert errors == []


#: The page redraws a view at most this often (app.js FRAME_MS = 100).
MAX_REDRAWS_PER_S = 10
FEED_RATE = 200  # trades a second
FEED_SECONDS = 3.0


def redraws_under_a_feed(url: str, fake) -> tuple[int, float, list[str]]:
    """Log in, open the market view, then feed the chosen symbol FEED_RATE trades a second
    for FEED_SECONDS: returns the market view's redraws meanwhile, the seconds between the
    two readings of its counter, and the console errors."""
    from playwright.sync_api import expect

    errors: list[str] = []
    with open_page(url, errors) as page:
        log_in(page, KEY)
        page.click("#tab-market")
        expect(page.locator("#chart")).to_have_attribute("data-symbol", "linear BTCUSDT",
                                                         timeout=WAIT_MS)
        now = trio.from_thread.run_sync(fake_now)
        trades = int(FEED_RATE * FEED_SECONDS)
        before = int(page.get_attribute("#market-view", "data-redraws"))
        start = time.monotonic()

        async def feed() -> None:
            t0 = trio.current_time()
            for i in range(trades):
                await trio.sleep_until(t0 + i / FEED_RATE)  # pacing, not synchronisation
                fake.trade("linear", "BTCUSDT", price=1000 + i, size=1, ts=now + i)

        trio.from_thread.run(feed)
        after = int(page.get_attribute("#market-view", "data-redraws"))
        seconds = time.monotonic() - start
        # The last trade reached the page: it drew what it was fed.
        page.wait_for_selector(
            f"#trades tbody tr:first-child td.num:has-text('{1000 + trades - 1}.')",
            timeout=WAIT_MS)
    return after - before, seconds, errors


async def test_market_view_redraws_at_most_10_times_a_second(
        fake_bybit, plugin_manager, nursery, monkeypatch) -> None:
    """Under 200 trades a second of the shown symbol (each one makes the view dirty), the
    market view is redrawn at most 10 times a second (a redraw per trade would be 600)."""
    monkeypatch.setenv("STREAMER_WSS_AUTH_KEY", KEY)
    port = free_port()
    toml = WEB_PIPE.format(ws=fake_bybit.ws_url("linear"), rest=fake_bybit.rest_url, port=port)
    streamer = Streamer(toml, plugin_manager)
    with trio.fail_after(100):
        await streamer.start(nursery)
        await fake_bybit.wait_subscribed("linear", ["publicTrade.BTCUSDT"])
        redraws, seconds, errors = await trio.to_thread.run_sync(
            redraws_under_a_feed, f"http://127.0.0.1:{port}/", fake_bybit)
        await streamer.stop()
    assert errors == []
    # One more than the rate allows: the first frame may fall at the window's very start.
    assert redraws <= MAX_REDRAWS_PER_S * seconds + 1, (redraws, seconds)
    assert redraws >= 5, redraws  # it does redraw while fed (a bound: real time)
