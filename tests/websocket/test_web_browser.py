"""The web view in a real browser: Debian's chromium driven by Playwright (never
``playwright install``), against the fake Bybit. Playwright's sync API runs in one worker
thread; it calls back into trio (fake trades, a restart) with ``trio.from_thread``."""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import tempfile
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import trio
from server_process import free_port

from streamer_websocket.subscription import IDENTITY_FIELDS
from websocket.web_helpers import BOOK_PIPE, BOOKS_TOP, WEB_PIPE, Streamer

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
        # The trades asked with three fields (side, price, size) still show whole, newest first.
        rows = [[cell.text_content() for cell in row.locator("td").all()]
                for row in page.locator("#trades tbody tr").all()]
        times = [datetime.datetime.fromtimestamp((now - 300_000 + i * 60_000) / 1000,
                                                 datetime.timezone.utc)
                 .strftime("%H:%M:%S.%f")[:-3] for i in (3, 2, 1, 0)]
        assert [(time, float(price), float(size)) for time, _, price, size in rows] == [
            (times[0], 103, 1), (times[1], 102, 1), (times[2], 101, 1), (times[3], 100, 1)]
        assert all(side in ("Buy", "Sell") for _, side, _, _ in rows), rows
        # The page asked for the latest ticker per symbol of each tick, and three fields.
        (client,) = trio.from_thread.run_sync(
            lambda: list(streamer.pipeline.node("wss").clients))
        assert client.batched and client.latest == {"ticker"}
        assert client.subscription.fields == {
            "ticker": IDENTITY_FIELDS | {"bid1Price", "ask1Price", "lastPrice"},
            "trades": IDENTITY_FIELDS | {"S", "p", "v"}}
        # This pipeline streams no book: the panel says so and shows no level.
        expect(page.locator("#book")).to_have_attribute("data-state", "none")
        assert page.text_content("#book-note") == "No book streamed for this symbol"
        assert not page.is_visible("#book-levels") and not page.is_visible("#book-best")
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


def book_topic(symbol: str) -> str:
    return f"orderbook.50.{symbol}"


def fake_book(fake, symbol: str) -> tuple[int, list[list[str]], list[list[str]]]:
    """The fake's true book of ``symbol`` now: its ``u``, bids and asks, best first."""
    book = fake.books.book("linear", book_topic(symbol))
    bids, asks = book.levels()
    return book.u, bids, asks


def change_book(fake, symbol: str) -> tuple[int, list[list[str]], list[list[str]]]:
    """30 pushes of the fake's book of ``symbol`` (the 6th a Bybit reset: a snapshot with
    ``u = 1`` and fresh levels); the fake's book after them (it changes only when pushed)."""
    for i in range(30):
        if i == 5:
            fake.books.inject("linear", book_topic(symbol), "reset")
        fake.push_book("linear", book_topic(symbol))
    return fake_book(fake, symbol)


def show_symbol(page, key: str) -> None:
    """Pick ``key`` ("channel symbol") and wait until its book is drawn whole."""
    from playwright.sync_api import expect

    expect(page.locator(f'#symbol option[value="{key}"]')).to_have_count(1, timeout=WAIT_MS)
    page.select_option("#symbol", key)
    expect(page.locator("#book")).to_have_attribute("data-symbol", key, timeout=WAIT_MS)
    expect(page.locator("#book")).to_have_attribute("data-state", "live", timeout=WAIT_MS)


def browse_books(url: str, fake) -> list[str]:
    """For each symbol in turn: show it, change the fake's book, and once the page drew the
    book of the fake's last update id, read the panel and compare it with the fake's book
    (unchanged since: the fake pushes only when told). Returns the console errors."""
    from playwright.sync_api import expect

    errors: list[str] = []
    with open_page(url, errors) as page:
        log_in(page, KEY)
        page.click("#tab-market")
        for symbol in ("BTCUSDT", "ETHUSDT"):
            show_symbol(page, f"linear {symbol}")
            u, bids, asks = trio.from_thread.run_sync(change_book, fake, symbol)
            # 25: above every update id of the book before the reset (at most 6).
            assert u == 25
            expect(page.locator("#book")).to_have_attribute("data-update-id", str(u),
                                                            timeout=WAIT_MS)
            assert page.get_attribute("#book", "data-state") == "live"
            assert page.text_content("#book-bid") == bids[0][0]
            assert page.text_content("#book-ask") == asks[0][0]
            assert page.text_content("#book-spread") == str(Decimal(asks[0][0])
                                                             - Decimal(bids[0][0]))
            cells = page.locator("#book-levels tbody td").all_text_contents()
            shown = [cells[i:i + 4] for i in range(0, len(cells), 4)]
            assert shown == [[b[1], b[0], a[0], a[1]] for b, a in zip(bids[:10], asks[:10],
                                                                     strict=True)]
    return errors


@pytest.mark.parametrize("through_top", [False, True], ids=["deltas", "books.top"])
async def test_book_view_shows_the_fakes_book(fake_bybit, plugin_manager, nursery,
                                               monkeypatch, through_top) -> None:
    """The market view's book panel equals the fake's true book (best bid, best ask, spread
    and the top 10 levels a side, as strings) at the fake's update id, for each of two
    symbols picked in turn, across a Bybit reset; fed the source's deltas as they come, or
    ``books.top``'s snapshots of the top 10 (and then the symbols are known from books
    alone: no ticker reaches the sink)."""
    monkeypatch.setenv("STREAMER_WSS_AUTH_KEY", KEY)
    port = free_port()
    toml = BOOK_PIPE.format(ws=fake_bybit.ws_url("linear"), rest=fake_bybit.rest_url,
                            port=port, top=BOOKS_TOP if through_top else "",
                            book_input="top" if through_top else "bybit")
    streamer = Streamer(toml, plugin_manager)
    with trio.fail_after(100):
        await streamer.start(nursery)
        await fake_bybit.wait_subscribed("linear", [book_topic("BTCUSDT"),
                                                    book_topic("ETHUSDT")])
        errors = await trio.to_thread.run_sync(
            browse_books, f"http://127.0.0.1:{port}/", fake_bybit)
        await streamer.stop()
    assert errors == []


#: The page redraws a view at most this often (app.js FRAME_MS = 100).
MAX_REDRAWS_PER_S = 10
FEED_RATE = 200  # trades or book deltas a second
FEED_SECONDS = 3.0


def redraws_under_a_feed(url: str, fake, fed: str) -> tuple[int, float, list[str]]:
    """Log in, open the market view of BTCUSDT, then feed it FEED_RATE trades or book deltas
    (``fed``) a second for FEED_SECONDS: returns the market view's redraws meanwhile, the
    seconds between the two readings of its counter, and the console errors."""
    from playwright.sync_api import expect

    errors: list[str] = []
    with open_page(url, errors) as page:
        log_in(page, KEY)
        page.click("#tab-market")
        if fed == "book":
            show_symbol(page, "linear BTCUSDT")
        expect(page.locator("#chart")).to_have_attribute("data-symbol", "linear BTCUSDT",
                                                         timeout=WAIT_MS)
        now = trio.from_thread.run_sync(fake_now)
        count = int(FEED_RATE * FEED_SECONDS)
        before = int(page.get_attribute("#market-view", "data-redraws"))
        start = time.monotonic()

        async def feed() -> None:
            t0 = trio.current_time()
            for i in range(count):
                await trio.sleep_until(t0 + i / FEED_RATE)  # pacing, not synchronisation
                if fed == "book":
                    fake.push_book("linear", book_topic("BTCUSDT"))
                else:
                    fake.trade("linear", "BTCUSDT", price=1000 + i, size=1, ts=now + i)

        trio.from_thread.run(feed)
        after = int(page.get_attribute("#market-view", "data-redraws"))
        seconds = time.monotonic() - start
        # The last trade or delta reached the page: it drew what it was fed.
        if fed == "book":
            u, _, _ = trio.from_thread.run_sync(fake_book, fake, "BTCUSDT")
            expect(page.locator("#book")).to_have_attribute("data-update-id", str(u),
                                                            timeout=WAIT_MS)
        else:
            page.wait_for_selector(
                f"#trades tbody tr:first-child td.num:has-text('{1000 + count - 1}.')",
                timeout=WAIT_MS)
    return after - before, seconds, errors


@pytest.mark.parametrize("fed", ["trades", "book"])
async def test_market_view_redraws_at_most_10_times_a_second(
        fake_bybit, plugin_manager, nursery, monkeypatch, fed) -> None:
    """Under 200 trades or 200 book deltas a second of the shown symbol (each one makes the
    view dirty), the market view is redrawn at most 10 times a second (a redraw per message
    would be 600)."""
    monkeypatch.setenv("STREAMER_WSS_AUTH_KEY", KEY)
    port = free_port()
    ws, rest = fake_bybit.ws_url("linear"), fake_bybit.rest_url
    if fed == "book":
        toml = BOOK_PIPE.format(ws=ws, rest=rest, port=port, top="", book_input="bybit")
        topics = [book_topic("BTCUSDT")]
    else:
        toml = WEB_PIPE.format(ws=ws, rest=rest, port=port)
        topics = ["publicTrade.BTCUSDT"]
    streamer = Streamer(toml, plugin_manager)
    with trio.fail_after(100):
        await streamer.start(nursery)
        await fake_bybit.wait_subscribed("linear", topics)
        redraws, seconds, errors = await trio.to_thread.run_sync(
            redraws_under_a_feed, f"http://127.0.0.1:{port}/", fake_bybit, fed)
        await streamer.stop()
    assert errors == []
    # One more than the rate allows: the first frame may fall at the window's very start.
    assert redraws <= MAX_REDRAWS_PER_S * seconds + 1, (redraws, seconds)
    assert redraws >= 5, redraws  # it does redraw while fed (a bound: real time)
