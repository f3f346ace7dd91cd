"""cryptofeed baseline for the end-to-end bench: its Bybit feed, trades (or, with
``--book-depth N``, its L2 books) only, a counting callback (uvloop if installed,
cryptofeed's default).

Runs with the interpreter of the bench's own cryptofeed virtual environment
(``bench_pipeline.py`` creates it; cryptofeed is never a dependency of the product). To reach
the local fake, two attributes are patched at run time, before the feed starts, and no
cryptofeed code is copied: the Bybit endpoints (WebSocket and instruments REST) point at the
fake, and the ``wss://``-only check of cryptofeed's WebSocket connection is given a ``wss://``
address to check while the ``ws://`` one is used. cryptofeed 2.4 subscribes every Bybit book
as ``orderbook.200``; with another ``--book-depth`` its subscribe requests are rewritten to
that depth on the way out (its book handling does not depend on the depth).

Same measuring protocol and output as ``bench_e2e_baseline.py``: ``--warmup`` seconds after
the first trade, then ``--count`` trades or ``--duration`` seconds; one JSON line.

    bench/.venv-cryptofeed/bin/python bench/bench_e2e_cryptofeed.py \
        --ws ws://127.0.0.1:P/v5/public/linear \
        --rest http://127.0.0.1:P --symbols 50 --count 200000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from importlib import metadata
from typing import Any

SYMBOL_BASES = ["BTC", "ETH", "SOL", "XRP", "1000PEPE", "DOGE", "BNB", "ADA"]


def symbol_names(n: int) -> list[str]:
    """The fake's symbol names (same rule as bench_e2e_common.symbol_names; this script runs
    in another interpreter and imports nothing of the repository)."""
    out = [b + "USDT" for b in SYMBOL_BASES[:n]]
    i = 0
    while len(out) < n:
        out.append(f"C{i:04d}USDT")
        i += 1
    return out


def cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def voluntary_switches() -> int:
    """Voluntary context switches of every thread (as bench_e2e_common.ctx_switches)."""
    total = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def patch_cryptofeed(ws_url: str, rest_url: str, book_depth: int) -> None:
    from cryptofeed import connection
    from cryptofeed.connection import RestEndpoint, Routes, WebsocketEndpoint
    from cryptofeed.defines import FUTURES, PERPETUAL
    from cryptofeed.exchanges import bybit

    feed = bybit.Bybit
    feed.websocket_endpoints = [
        WebsocketEndpoint(ws_url, instrument_filter=("TYPE", (FUTURES, PERPETUAL)),
                          options={"compression": None}),
    ]
    feed.rest_endpoints = [
        # both routes, as cryptofeed has them (its parser expects a list of two answers)
        RestEndpoint(rest_url, routes=Routes([
            "/v5/market/instruments-info?&category=linear&status=Trading&limit=1000",
            "/v5/market/instruments-info?&category=spot&status=Trading&limit=1000"])),
    ]
    original = connection.WSAsyncConn.__init__

    def init(self: Any, address: str, *args: Any, **kwargs: Any) -> None:
        original(self, "wss://" + address.split("://", 1)[1], *args, **kwargs)
        self.address = address

    connection.WSAsyncConn.__init__ = init  # type: ignore[method-assign]
    if book_depth and book_depth != 200:
        write = connection.WSAsyncConn.write

        async def write_depth(self: Any, data: str) -> None:
            await write(self, data.replace('"orderbook.200.', f'"orderbook.{book_depth}.'))

        connection.WSAsyncConn.write = write_depth  # type: ignore[method-assign]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ws", required=True)
    p.add_argument("--rest", required=True)
    p.add_argument("--symbols", type=int, default=50)
    p.add_argument("--book-depth", type=int, default=0,
                   help="its L2 books at this depth instead of the trades (0: trades)")
    p.add_argument("--count", type=int, default=0)
    p.add_argument("--duration", type=float, default=0.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--timeout", type=float, default=300.0)
    args = p.parse_args()
    if bool(args.count) == bool(args.duration):
        p.error("give exactly one of --count and --duration")
    patch_cryptofeed(args.ws, args.rest.rstrip("/"), args.book_depth)

    from cryptofeed import FeedHandler
    from cryptofeed.defines import L2_BOOK, TRADES
    from cryptofeed.exchanges import Bybit

    state: dict[str, Any] = {"n": 0, "warm_until": None, "c0": 0.0, "t0": 0.0, "n0": 0,
                             "end": None, "x0": 0}
    clock = time.perf_counter

    def finish() -> None:
        c1, t1 = cpu_seconds(), clock()
        emit({"event": "result", "client": "cryptofeed", "messages": state["n"] - state["n0"],
              "cpu_s": c1 - state["c0"], "wall_s": t1 - state["t0"],
              "ctx_voluntary": voluntary_switches() - state["x0"],
              "version": metadata.version("cryptofeed"),
              "uvloop": "uvloop" in sys.modules})
        os._exit(0)  # the feed handler has no "stop after N"; the bench reads the line

    async def on_trade(trade: Any, receipt: float) -> None:
        state["n"] += 1
        now = clock()
        if state["warm_until"] is None:
            state["warm_until"] = now + args.warmup
            return
        if state["end"] is None:
            if now >= state["warm_until"]:
                state["c0"], state["t0"], state["n0"] = cpu_seconds(), now, state["n"]
                state["x0"] = voluntary_switches()
                state["end"] = (state["n"] + args.count) if args.count else now + args.duration
            return
        if (state["n"] >= state["end"]) if args.count else (now >= state["end"]):
            finish()

    symbols = [f"{s[:-4]}-USDT-PERP" for s in symbol_names(args.symbols)]
    handler = FeedHandler(config={"log": {"filename": "/dev/null", "level": "WARNING"},
                                  "uvloop": True})
    # The handler has installed uvloop's policy; cryptofeed 2.4 then asks for the current
    # loop, which current uvloop no longer creates on demand.
    import asyncio

    asyncio.set_event_loop(asyncio.new_event_loop())
    channel = L2_BOOK if args.book_depth else TRADES
    handler.add_feed(Bybit(symbols=symbols, channels=[channel],
                           callbacks={channel: on_trade}))
    import signal

    signal.signal(signal.SIGALRM, lambda *_: os._exit(3))
    signal.alarm(int(args.timeout))
    handler.run()


if __name__ == "__main__":
    main()
