"""Bench: CPU per order-book message, the checked book path against a bare JSON client.

50 symbols at depth 50, messages as the simulator makes them (``simulator/books.py``: a
snapshot each, then deltas of 1-3 changed levels plus the deletes a depth overflow makes), in
reads of 50 messages (2,500 msg/s arrives as ~50 reads/s of 50 messages at 20 ms pushes).
Per message, in one process, no sockets (the socket cost is the same for both):

- ``bare``: ``json.loads`` of each payload, what a bare json client does before anything;
- ``bare_msgspec``: ``msgspec.json.decode`` of each payload (a faster bare client);
- ``source``: the source's path: ``MessageDecoder.decode_read`` with its ``BookKeeper``
  (decode, ``u`` continuity, apply to the book, crossed check, ``Book`` events).

Prints microseconds per message (median of ``--repeat`` passes over ``--messages``), the
share of one core each takes at ``--rate`` messages/s, and writes the same table to
``bench/results/<date>-books.md`` (the process's CPU only: run it on an idle machine).

    .venv/bin/python bench/bench_books.py [--messages 50000] [--repeat 5] [--rate 2500]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

from streamer import Event, Metrics, RateLimitedLog
from streamer_bybit.book_keeper import BookKeeper
from streamer_bybit.decode import MessageDecoder
from streamer_bybit.simulator.books import BookFeed
from streamer_bybit.tickers import PriceTracker, TickerBook

SYMBOLS = [f"SYM{i:02d}USDT" for i in range(50)]
DEPTH = 50
READ = 50  # messages per socket read
RESULTS = Path(__file__).resolve().parent / "results"


def payloads(n: int) -> tuple[list[bytes], list[bytes]]:
    """The 50 snapshots, then ``n`` deltas round-robin over the symbols."""
    feed = BookFeed(seed=7)
    topics = [f"orderbook.{DEPTH}.{s}" for s in SYMBOLS]
    snapshots = [msgspec.json.encode(feed.subscribed("linear", t, 1)) for t in topics]
    deltas = []
    for i in range(n):
        for m in feed.push("linear", topics[i % len(topics)], 2 + i):
            deltas.append(msgspec.json.encode(m))
    return snapshots, deltas


def source_path(snapshots: list[bytes]) -> Callable[[list[bytes]], None]:
    metrics = Metrics()
    log = RateLimitedLog(logging.getLogger("bench.books"))
    prices = PriceTracker("linear")
    decoder = MessageDecoder("linear", metrics, log,
                             TickerBook("linear", prices, emit_tickers=False, price_field=None),
                             prices)
    decoder.books = BookKeeper("linear", DEPTH, SYMBOLS, 1.0, metrics, log, "bench#0")
    decoder.decode_read(snapshots, [])

    def run(read: list[bytes]) -> None:
        out: list[Event] = []
        decoder.decode_read(read, out)
        if len(out) != len(read):
            raise AssertionError(f"{len(read) - len(out)} messages broke a book: {metrics}")

    return run


def bare_json(read: list[bytes]) -> None:
    for p in read:
        json.loads(p)


_raw = msgspec.json.Decoder()


def bare_msgspec(read: list[bytes]) -> None:
    for p in read:
        _raw.decode(p)


def measure(step: Callable[[list[bytes]], None], reads: list[list[bytes]], n: int) -> float:
    """CPU microseconds per message of one pass."""
    start = time.process_time()
    for read in reads:
        step(read)
    return (time.process_time() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rate", type=float, default=2_500.0)
    args = parser.parse_args()
    snapshots, deltas = payloads(args.messages)
    reads = [deltas[i:i + READ] for i in range(0, len(deltas), READ)]
    n = len(deltas)
    size = sum(map(len, deltas)) / n
    results: dict[str, float] = {}
    for name, make in (("bare", lambda: bare_json), ("bare_msgspec", lambda: bare_msgspec),
                       ("source", lambda: source_path(snapshots))):
        # The source's books advance with every pass: each pass starts from fresh books.
        results[name] = statistics.median(measure(make(), reads, n)
                                          for _ in range(args.repeat))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=False).stdout.strip()
    lines = [
        f"# bench_books.py ({dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, "
        f"commit {commit})",
        "",
        f"`.venv/bin/python bench/bench_books.py --messages {args.messages} --repeat "
        f"{args.repeat} --rate {args.rate:g}`; {len(SYMBOLS)} symbols at depth {DEPTH}, "
        f"{n} delta messages of {size:.0f} bytes on average in reads of {READ}; "
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at "
        "the end. CPU of this process only (no sockets, no scheduler).",
        "",
        f"| path | us per message | share of a core at {args.rate:g} msg/s | vs bare json |",
        "|---|---|---|---|",
    ]
    for name, us in results.items():
        lines.append(f"| {name} | {us:.2f} | {us * args.rate / 1e4:.2f}% | "
                     f"{us / results['bare']:.2f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d-%H%M}-books.md"
    out.write_text(text)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
