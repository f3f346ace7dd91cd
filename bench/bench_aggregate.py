"""Bench: 1,000,000 trades over 500 symbols and 5 intervals through klines.from_trades alone.

Runs ``KlineTransform.process`` on batches as a source would deliver them (one batch per
Bybit message, ~20 trades of one symbol) and ``close_due`` at every minute boundary of trade
time, then prints trades/s and the peak RSS of the process.

    .venv/bin/python bench/bench_aggregate.py [--trades N] [--symbols N] [--batch N]
"""

from __future__ import annotations

import argparse
import logging
import random
import resource
import sys
import time

import trio

from streamer._api import Context
from streamer._config import structure_options
from streamer._events import Trade
from streamer._metrics import Metrics
from streamer_aggregate.config import KlineConfig
from streamer_aggregate.transform import KlineTransform


def make_batches(n_trades: int, n_symbols: int, batch: int, start_ms: int) -> list[list[Trade]]:
    rng = random.Random(1)
    symbols = [f"SYM{i}USDT" for i in range(n_symbols)]
    prices = [rng.uniform(0.01, 60000) for _ in symbols]
    # 1M trades spread over 2 hours of trade time: 24 one-minute boundaries per 10k batches.
    span_ms = 2 * 3_600_000
    batches = []
    n_batches = n_trades // batch
    for b in range(n_batches):
        ts = start_ms + b * span_ms // n_batches
        i = rng.randrange(n_symbols)
        sym = symbols[i]
        p = prices[i]
        batches.append([
            Trade("linear", sym, ts, "Buy", f"{p * (1 + rng.uniform(-1e-3, 1e-3)):.4f}",
                  f"{rng.uniform(0.001, 5):.3f}", "x")
            for _ in range(batch)
        ])
    return batches


async def main(args: argparse.Namespace) -> None:
    config = structure_options(
        KlineConfig,
        {"intervals": ["1m", "5m", "15m", "1h", "4h"], "first_candle": "partial",
         "updates": args.updates},
    )
    ctx = Context(name="bench", type="klines.from_trades", logger=logging.getLogger("bench"),
                  metrics=Metrics())
    tr = KlineTransform(config, ctx)
    start_ms = 1_700_000_100_000
    batches = make_batches(args.trades, args.symbols, args.batch, start_ms)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    n = sum(len(b) for b in batches)
    klines = 0
    next_close = start_ms + 60_000 + 100
    process = tr.process
    agg = tr.aggregator
    t0 = time.perf_counter()
    for batch in batches:
        ts = batch[0].ts
        if ts >= next_close:
            klines += len(agg.close_due(ts))
            next_close = ts - ts % 60_000 + 60_100
        klines += len(process(batch))
    klines += len(agg.close_due(start_ms + 3 * 3_600_000))
    elapsed = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"{n:,} trades, {args.symbols} symbols, 5 intervals, batches of {args.batch}, "
          f"updates={args.updates}")
    print(f"  {n / elapsed:,.0f} trades/s ({elapsed * 1e9 / n:.0f} ns/trade), "
          f"{klines:,} klines emitted")
    print(f"  peak RSS {rss / 1024:.1f} MiB (after building the input: "
          f"{rss_before / 1024:.1f} MiB)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=1_000_000)
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--updates", default="closed",
                        choices=["closed", "every_trade", "throttled"])
    trio.run(main, parser.parse_args(sys.argv[1:]))
