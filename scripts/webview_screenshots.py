"""Take docs/images/webview-{status,market}.png from `streamer demo --web` (the Bybit
simulator, offline) in Debian's chromium driven by Playwright (never `playwright install`).

The demo streams three symbols with 1 s and 1 m klines and their order books; the status view
is taken once the source shows as connected and a rate was computed (two status answers), the
market view once the chosen symbol's 1 s chart holds at least ``MIN_CANDLES`` candles and its
book panel shows ten levels a side.

    .venv/bin/python scripts/webview_screenshots.py [OUT_DIR]      # default docs/images
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
MIN_CANDLES = 40
#: Milliseconds any one wait may take (the candles take MIN_CANDLES seconds to appear).
WAIT_MS = 120_000


def web_line(stderr) -> tuple[int, str]:
    while line := stderr.readline():
        sys.stderr.write(line)
        found = re.search(r"web view at http://127\.0\.0\.1:(\d+)/ \(user demo, key (\S+)\)",
                          line)
        if found:
            return int(found.group(1)), found.group(2)
    raise SystemExit("the demo ended without printing the web view's URL")


def shoot(port: int, key: str, out: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with tempfile.TemporaryDirectory() as profile, sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1100, "height": 720})
        try:
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector("#login-form", state="visible", timeout=WAIT_MS)
            page.fill("#login-user", "demo")
            page.fill("#login-key", key)
            page.click("#login-submit")
            page.wait_for_selector('#sources tr[data-node="linear"][data-state="connected"]',
                                   timeout=WAIT_MS)
            # a rate needs two status answers: "Messages/s" is a number, not "-"
            expect(page.locator('#sources tr[data-node="linear"] td').nth(3)).to_have_text(
                re.compile(r"^[0-9.]+$"), timeout=WAIT_MS)
            page.click("#tab-market")
            page.select_option("#interval", "1000")
            expect(page.locator("#chart")).to_have_attribute(
                "data-candles", re.compile(rf"^([1-9][0-9]{{2,}}|[{MIN_CANDLES // 10}-9][0-9])$"),
                timeout=WAIT_MS)
            expect(page.locator("#trades tbody tr")).to_have_count(50, timeout=WAIT_MS)
            expect(page.locator("#book")).to_have_attribute("data-state", "live",
                                                            timeout=WAIT_MS)
            expect(page.locator("#book-levels tbody tr")).to_have_count(10, timeout=WAIT_MS)
            page.screenshot(path=str(out / "webview-market.png"))
            # the status view as it is now, not as last drawn before the market view: wait
            # for a redraw after the switch
            drawn = page.get_attribute("#status-view", "data-redraws")
            page.click("#tab-status")
            expect(page.locator("#status-view")).not_to_have_attribute(
                "data-redraws", drawn, timeout=WAIT_MS)
            page.wait_for_selector('#sources tr[data-node="linear"][data-state="connected"]',
                                   timeout=WAIT_MS)
            page.screenshot(path=str(out / "webview-status.png"))
        finally:
            browser.close()


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "images"
    env = {k: v for k, v in os.environ.items() if k != "STREAMER_WSS_AUTH_KEY"}
    demo = subprocess.Popen(
        [sys.executable, "-m", "streamer", "demo", "--web", "--symbols",
         "BTCUSDT,ETHUSDT,SOLUSDT", "--intervals", "1s", "1m", "--rate", "30"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert demo.stderr is not None
        port, key = web_line(demo.stderr)
        # the rest of the demo's log, read on so that a full pipe never blocks it
        threading.Thread(target=demo.stderr.read, daemon=True).start()
        shoot(port, key, out)
    finally:
        demo.send_signal(signal.SIGINT)
        demo.wait(timeout=60)
    for name in ("webview-status.png", "webview-market.png"):
        print(out / name)


if __name__ == "__main__":
    main()
