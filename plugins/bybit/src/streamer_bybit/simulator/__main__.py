"""``python -m streamer_bybit.simulator``: serve a random market for benchmarks.

Prints one JSON line ``{"port","ws_linear","ws_spot","rest"[,"cafile"]}`` once bound, then
streams each category's random market (all its symbols, round-robin) while some connection
of that category is subscribed.  ``--rate 0`` = flat out.  ``--pacing even``: one message
every 1/rate s, each its own write (default ``batched``: every message due at a millisecond
wake-up, in shared writes).  ``--stamp``: the message-level
``ts`` of every message is the wall-clock time (ms, ``time.time_ns() // 10**6``) when the
fake built it, just before writing it; benches use it to measure latency (no extra keys).
Each subscribed ``orderbook.{depth}.{symbol}`` topic is pushed at its depth's interval
(books.py: a snapshot on subscribe, then deltas); ``--book-rate N``: N pushes a second over
all of them instead (0 = flat out); ``--no-trades``: no random market,
the books only.  ``--full-books``: every book holds its whole depth (else
at most 60 levels a side).  With ``--stamp`` a book message's ``seq`` is the wall-clock
microsecond the fake built it at.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys

import trio

from .books import run_books
from .server import FakeBybit
from .state import PACINGS
from .tls import make_ssl_contexts

_BASES = ["BTC", "ETH", "SOL", "XRP", "1000PEPE", "DOGE", "BNB", "ADA"]


def symbols(n: int) -> list[str]:
    out = [b + "USDT" for b in _BASES[:n]]
    i = 0
    while len(out) < n:
        out.append(f"C{i:04d}USDT")
        i += 1
    return out


async def amain(args) -> None:
    ctx = cafile = None
    if args.tls:
        ctx, _client, cafile = make_ssl_contexts()
    syms = symbols(args.symbols)
    fake = FakeBybit(linear_symbols=syms, spot_symbols=syms, seed=args.seed, ssl_context=ctx,
                     host=args.host, port=args.port, history_limit=1000, stamp=args.stamp,
                     non_trading_instruments=False, rest_trade_lag=args.rest_trade_lag,
                     pacing=args.pacing, full_books=args.full_books)
    fake.idle_timeout = None if args.idle_timeout <= 0 else args.idle_timeout
    if args.kline_fail:
        fake.rest_failing.add("/v5/market/kline")
    if args.kline_delay:
        fake.rest_path_delay["/v5/market/kline"] = args.kline_delay
    with trio.move_on_after(args.duration if args.duration else float("inf")):
        async with trio.open_nursery() as nursery:
            await nursery.start(fake.serve)
            info = {"port": fake.port, "ws_linear": fake.ws_url("linear"),
                    "ws_spot": fake.ws_url("spot"), "rest": fake.rest_url}
            if cafile:
                info["cafile"] = cafile
            print(json.dumps(info), flush=True)
            for cat in () if args.no_trades else ("linear", "spot"):
                nursery.start_soon(functools.partial(
                    fake.run_market, cat, None, rate=args.rate,
                    trades_per_message=args.trades_per_message, tickers=not args.no_tickers,
                    wait_for_subscribers=True))
            # Order books: each subscribed orderbook topic at its depth's push interval.
            await nursery.start(functools.partial(run_books, fake, rate=args.book_rate))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m streamer_bybit.simulator", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--symbols", type=int, default=50)
    p.add_argument("--rate", type=float, default=50000.0,
                   help="messages/s per category; 0 = flat out")
    p.add_argument("--pacing", choices=PACINGS, default="batched",
                   help="batched: at each (millisecond) wake-up every message due, sharing "
                        "writes; even: one message every 1/rate s, each its own write")
    p.add_argument("--trades-per-message", type=int, default=1)
    p.add_argument("--tls", action="store_true")
    p.add_argument("--duration", type=float, default=None, help="exit after S seconds")
    p.add_argument("--stamp", action="store_true")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-tickers", action="store_true")
    p.add_argument("--no-trades", action="store_true",
                   help="no random market (trades, tickers): the order books only")
    p.add_argument("--kline-fail", action="store_true", help="answer GET /v5/market/kline 503")
    p.add_argument("--kline-delay", type=float, default=0.0,
                   help="answer GET /v5/market/kline after S seconds")
    p.add_argument("--idle-timeout", type=float, default=600.0, help="<= 0 disables")
    p.add_argument("--book-rate", type=float, default=None,
                   help="order-book pushes/s over all subscribed book topics, round-robin; "
                        "0 = flat out (default: each at its depth's interval, as Bybit)")
    p.add_argument("--full-books", action="store_true",
                   help="fill every book to its whole depth (default: at most 60 levels a "
                        "side)")
    p.add_argument("--rest-trade-lag", type=float, default=0.0,
                   help="seconds REST recent-trade lags the WebSocket")
    args = p.parse_args(argv)
    try:
        trio.run(amain, args)
    except KeyboardInterrupt:
        pass
    sys.stdout.flush()


if __name__ == "__main__":
    main()
