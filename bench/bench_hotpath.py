"""Bench: the Bybit source's per-message work in one process, no sockets, no scheduler.

One socket read as the fake sends it flat out (300 one-trade publicTrade frames of ~215
bytes over 50 symbols, ~64 KiB) goes through the three steps the reader runs per read:

- split: ``MessageReader.receive_data`` (frame headers -> payloads),
- decode: ``MessageDecoder.decode_read`` (payloads -> Trade events), then the hold book's
  ``live`` (idle: it notes each trade in the gap-recovery window, as a connection wires it),
- aggregate: ``KlineAggregator.add_trades`` (1m 5m 1h 4h 1D, as the light pipeline; with
  ``--turnover`` the klines' turnover too, as ``klines.from_trades`` by default).

Each read has new trade times (7 ms apart), so candles open and close as in a live run.
Prints microseconds per message for each step (median of ``--repeat`` passes of ``--reads``
reads; the process's CPU only, so run it on an idle machine and compare commits in the same
session). What the end-to-end bench adds on top: wake-ups, socket reads, routing, sinks.

    .venv/bin/python bench/bench_hotpath.py [--reads 300] [--repeat 7] [--turnover]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from collections.abc import Callable

from websockets.client import ClientProtocol
from websockets.protocol import State
from websockets.uri import parse_uri

from streamer import Event, Metrics, RateLimitedLog
from streamer.net._websocket import MessageReader
from streamer_aggregate.aggregator import KlineAggregator
from streamer_bybit.decode import MessageDecoder
from streamer_bybit.tickers import PriceTracker, TickerBook

SYMBOLS = [f"SYM{i}USDT" for i in range(50)]
INTERVALS_MS = [60_000, 300_000, 3_600_000, 14_400_000, 86_400_000]
MESSAGES_PER_READ = 300


def ws_frame(payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return bytes((0x81, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + n.to_bytes(8, "big") + payload


def make_reads(n_reads: int) -> list[bytes]:
    reads = []
    ts = 1_700_000_000_000
    k = 0
    for _ in range(n_reads):
        frames = []
        for _ in range(MESSAGES_PER_READ):
            s = SYMBOLS[k % len(SYMBOLS)]
            ts += 7
            size = f"0.{k % 997 + 1:03d}"
            price = f"{30000 + k % 50}.{k % 100:02d}"
            msg = (
                f'{{"topic":"publicTrade.{s}","type":"snapshot","ts":{ts},"data":[{{"T":{ts},'
                f'"s":"{s}","S":"Buy","v":"{size}","p":"{price}","L":"PlusTick","i":"{k}-abc",'
                f'"BT":false,"RPI":false,"seq":{k}}}]}}'
            )
            frames.append(ws_frame(msg.encode()))
            k += 1
        reads.append(b"".join(frames))
    return reads


def _trade_window(
    decoder: MessageDecoder, metrics: Metrics
) -> Callable[[list[Event]], list[Event]]:
    """What a connection runs on each read's events after the decoder, nothing held."""
    try:
        from streamer_bybit.hold_book import HoldBook
    except ImportError:  # before the hold book
        from streamer_bybit.recovery import GapRecovery, RecoverySettings

        async def no_emit(events: list[Event]) -> None:
            raise AssertionError("the bench never recovers a gap")

        recovery = GapRecovery("linear", SYMBOLS, None, RecoverySettings(), no_emit,
                               metrics=metrics, logger=logging.getLogger("bench.hotpath"),
                               name="bench")
        decoder.on_trades = recovery.on_trades  # type: ignore[attr-defined]
        return lambda events: events
    return HoldBook(metrics, 20_000).live


def one_pass(reads: list[bytes], turnover: bool = False) -> tuple[float, float, float]:
    protocol = ClientProtocol(parse_uri("ws://127.0.0.1/"))
    protocol.state = State.OPEN
    reader = MessageReader(protocol)
    metrics = Metrics()
    log = RateLimitedLog(logging.getLogger("bench.hotpath"), 10)
    prices = PriceTracker("linear")
    decoder = MessageDecoder("linear", metrics, log,
                             TickerBook("linear", prices, emit_tickers=False, price_field=None),
                             prices)
    # Nothing held (no gap): only the window of delivered trades is exercised. A commit from
    # before the hold book: recovery noted the trades through the decoder's on_trades.
    live = _trade_window(decoder, metrics)
    aggregator = KlineAggregator(INTERVALS_MS, first_candle="partial", metrics=metrics,
                                 turnover=turnover)
    # getattr: the same file also measures commits from before decode_read (A/B in a worktree)
    decode_read = getattr(decoder, "decode_read", None)
    split = decode = aggregate = 0.0
    clock = time.process_time
    for data in reads:
        t0 = clock()
        payloads = reader.receive_data(data)
        t1 = clock()
        events: list[Event] = []
        if decode_read is not None:
            decode_read(payloads, events)
        else:  # a commit before decode_read: one call per message
            for payload in payloads:
                decoder.decode(payload, events)
        events = live(events)
        t2 = clock()
        aggregator.add_trades(events)
        t3 = clock()
        split += t1 - t0
        decode += t2 - t1
        aggregate += t3 - t2
    per = 1e6 / (len(reads) * MESSAGES_PER_READ)
    return split * per, decode * per, aggregate * per


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reads", type=int, default=300)
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--turnover", action="store_true", help="klines with turnover")
    args = p.parse_args()
    reads = make_reads(args.reads)
    passes = [one_pass(reads, args.turnover) for _ in range(args.repeat)]
    for i, step in enumerate(("split", "decode + trade window", "aggregate (5 intervals)")):
        values = [x[i] for x in passes]
        print(f"{step:<26} {statistics.median(values):.3f} us/msg "
              f"({min(values):.3f}-{max(values):.3f}, n={len(values)})")
    totals = [sum(x) for x in passes]
    print(f"{'total':<26} {statistics.median(totals):.3f} us/msg "
          f"({min(totals):.3f}-{max(totals):.3f}, n={len(totals)})")


if __name__ == "__main__":
    main()
