"""Gap recovery in real time against a REST recent-trade list that lags the WebSocket.

The fake Bybit (in-process) resets the source's connection 3 s after every resubscribe for
``--duration`` seconds while 5 symbols trade at ``--rate`` trades/s in all; its recent-trade
list lags the WebSocket by ``--lag`` seconds. Afterwards the trades delivered are compared
with the fake's history: lost, doubled, out of order (per symbol), and the source's counters.

    .venv/bin/python bench/bench_recovery_lag.py --lag 1.5 --duration 30    # ~45 s
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from bybit.harness import Collector, make_source

from streamer._events import Trade
from streamer_bybit.simulator import FakeBybit

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT"]
TOPICS = [f"publicTrade.{s}" for s in SYMBOLS]


async def run(lag: float, duration: float, rate: float) -> dict[str, int]:
    fake = FakeBybit(linear_symbols=SYMBOLS, seed=1, rest_trade_lag=lag)
    collector = Collector()
    async with trio.open_nursery() as nursery:
        await nursery.start(fake.serve)
        source = make_source(fake, symbols=SYMBOLS)
        await nursery.start(source.run, collector)

        async def market() -> None:
            while True:
                for symbol in SYMBOLS:
                    fake.trade("linear", symbol)
                await trio.sleep(len(SYMBOLS) / rate)

        async with trio.open_nursery() as resets:
            resets.start_soon(market)
            end = trio.current_time() + duration
            while trio.current_time() < end:
                await fake.wait_subscribed("linear", TOPICS)
                await trio.sleep(3)
                fake.drop_connections()
            resets.cancel_scope.cancel()
        await fake.wait_subscribed("linear", TOPICS)
        with trio.move_on_after(60):  # the last recovery closes its gap
            while not (collector.gaps and collector.gaps[-1].closed):
                await trio.sleep(0.2)
        await trio.sleep(2)
        nursery.cancel_scope.cancel()
    out = {"sent": 0, "lost": 0, "doubled": 0, "symbols_out_of_order": 0}
    for symbol in SYMBOLS:
        want = [t["i"] for t in fake.history("linear", symbol)]
        got = [e.trade_id for e in collector.of(Trade) if e.symbol == symbol]
        seen = set(got)
        out["sent"] += len(want)
        out["lost"] += len(set(want) - seen)
        out["doubled"] += len(got) - len(seen)
        out["symbols_out_of_order"] += got != [i for i in want if i in seen]
    for key in ("reconnects", "recovered_trades", "trade_gaps", "recovery_retries",
                "rest_failures"):
        out[key] = source.metrics[key]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lag", type=float, default=1.5, help="REST lag behind the WebSocket, s")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of resets")
    p.add_argument("--rate", type=float, default=100.0, help="trades per second in all")
    args = p.parse_args()
    logging.basicConfig(level=logging.ERROR)
    result = trio.run(run, args.lag, args.duration, args.rate)
    print(f"lag={args.lag:g}s " + " ".join(f"{k}={v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
