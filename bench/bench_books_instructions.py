"""Bench: instructions per order-book message on the source's book path, counted by valgrind.

The book path of ``bench_books.py`` (``MessageDecoder.decode_read`` with its ``BookKeeper``:
decode, ``u`` continuity, book upkeep, crossed and depth checks, ``Book`` events) and the
bare client's ``json.loads``, on the simulator's full books (50 symbols at ``--depths``,
deltas of 1-3 changed levels plus the deletes a depth overflow makes, in reads of 50), each
run in a fresh interpreter under ``valgrind --tool=callgrind``. Instructions do not depend
on the machine's load (time does, and the 2 shared cores are seldom idle): a run processes
its messages once and three times, and the difference over the extra messages is the
figure (start-up, imports and message making cancel out). Rows:

- ``delta``: a delta of a live book (after the 50 snapshots);
- ``snapshot``: a snapshot of the whole depth (the 50 again: each replaces its book);
- ``bare json``: ``json.loads`` of the same deltas.

With ``--base REV`` the source rows run on that commit too (its core and Bybit sources on
``PYTHONPATH``, taken out of git; the installed libraries the same). Writes
``bench/results/<UTC time>-books-instructions.md``.

    .venv/bin/python bench/bench_books_instructions.py [--base REV] [--depths 50,1000]
        [--messages 4000]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from bench_trees import ROOT, commit_label, extract, machine_line, source_path

PARTS = ("core", "plugins/bybit")
SYMBOLS = [f"SYM{i:02d}USDT" for i in range(50)]
READ = 50
RESULTS = Path(__file__).resolve().parent / "results"


def worker(row: str, depth: int, messages: int, times: int) -> None:
    """One counted run: ``row``'s messages processed ``times`` times (1 or 3)."""
    import logging

    import msgspec

    from streamer import Event, Metrics, RateLimitedLog
    from streamer_bybit.book_keeper import BookKeeper
    from streamer_bybit.decode import MessageDecoder
    from streamer_bybit.simulator.books import BookFeed
    from streamer_bybit.tickers import PriceTracker, TickerBook

    feed = BookFeed(seed=7, full=True)
    topics = [f"orderbook.{depth}.{s}" for s in SYMBOLS]
    snapshots = [msgspec.json.encode(feed.subscribed("linear", t, 1)) for t in topics]
    deltas = []
    for i in range(3 * messages):  # always made: the runs differ only in what they process
        for m in feed.push("linear", topics[i % len(topics)], 2 + i):
            deltas.append(msgspec.json.encode(m))
    count = len(deltas) // 3 if row != "snapshot" else len(snapshots)
    print(count)
    if row == "bare json":
        for p in deltas[: count * times]:
            json.loads(p)
        return
    metrics = Metrics()
    log = RateLimitedLog(logging.getLogger("bench.books"))
    prices = PriceTracker("linear")
    decoder = MessageDecoder("linear", metrics, log,
                             TickerBook("linear", prices, emit_tickers=False, price_field=None),
                             prices)
    decoder.books = BookKeeper("linear", depth, SYMBOLS, 1.0, metrics, log, "bench#0")
    out: list[Event] = []
    for _ in range(times if row == "snapshot" else 1):
        decoder.decode_read(snapshots, out)
    if row == "delta":
        todo = deltas[: count * times]
        for i in range(0, len(todo), READ):
            decoder.decode_read(todo[i:i + READ], out)
    expected = (len(snapshots) * (times if row == "snapshot" else 1)
                + (count * times if row == "delta" else 0))
    if len(out) != expected:
        raise SystemExit(f"{expected - len(out)} messages broke a book: {metrics.snapshot()}")


def count(row: str, depth: int, messages: int, times: int, pythonpath: str
          ) -> tuple[int, int]:
    """Instructions of one run, and the messages of ``row`` in one pass."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/cg.out",
               sys.executable, __file__, "--worker", row, str(depth), str(messages),
               str(times)]
        env = dict(os.environ, PYTHONPATH=pythonpath)
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    found = re.search(r"Collected : (\d+)", r.stderr)
    if r.returncode != 0 or found is None:
        raise SystemExit(f"{row} depth {depth}: valgrind failed:\n{r.stderr[-2000:]}")
    return int(found.group(1)), int(r.stdout.split()[-1])


def per_message(row: str, depth: int, messages: int, pythonpath: str) -> tuple[float, int]:
    """Instructions per extra message, and how many extra messages that is."""
    once, n = count(row, depth, messages, 1, pythonpath)
    thrice, _ = count(row, depth, messages, 3, pythonpath)
    return (thrice - once) / (2 * n), 2 * n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="a commit to count too (A/B)")
    parser.add_argument("--depths", default="50,1000")
    parser.add_argument("--messages", type=int, default=4000)
    args = parser.parse_args()
    load_before = os.getloadavg()
    depths = [int(d) for d in args.depths.split(",")]
    here = commit_label("HEAD", PARTS)
    trees: list[tuple[str, str]] = [(here, source_path(ROOT, PARTS))]
    with tempfile.TemporaryDirectory() as tmp:
        if args.base:
            extract(args.base, Path(tmp), PARTS)
            trees.insert(0, (commit_label(args.base), source_path(Path(tmp), PARTS)))
        rows: list[tuple[int, str, str, float, int]] = []
        for depth in depths:
            for label, path in trees:
                for row in ("delta", "snapshot"):
                    ir, n = per_message(row, depth, args.messages, path)
                    rows.append((depth, row, label, ir, n))
                    print(depth, row, label, f"{ir:,.0f}", flush=True)
            ir, n = per_message("bare json", depth, args.messages, trees[-1][1])
            rows.append((depth, "bare json", "-", ir, n))
            print(depth, "bare json", f"{ir:,.0f}", flush=True)
    now = datetime.now(timezone.utc)
    cmd = " ".join(["bench/bench_books_instructions.py", *sys.argv[1:]])
    lines = [f"# bench_books_instructions run {now:%Y-%m-%d %H:%M:%S} UTC", "",
             f"Command: `.venv/bin/python {cmd}`  ",
             f"Commit: `{here}`" + (f"; base `{trees[0][0]}`" if args.base else "") + "  ",
             machine_line(load_before, os.getloadavg()) + " (instructions do not depend on "
             "it)", "",
             "Instructions (valgrind callgrind, user space, the whole interpreter) per message: "
             "the difference between processing the messages three times and once, over the "
             "extra messages. Full books of 50 symbols; deltas of 1-3 changed levels (about 2 "
             "levels a message), in reads of 50.", "",
             "| depth | row | commit | instructions / message | / bare json.loads | messages |",
             "|---|---|---|---|---|---|"]
    bare = {d: ir for d, row, _, ir, _ in rows if row == "bare json"}
    for depth, row, label, ir, n in rows:
        ratio = f"{ir / bare[depth]:.2f}x" if row != "snapshot" else ""
        lines.append(f"| {depth} | {row} | {label} | {ir:,.0f} | {ratio} | {n} |")
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{now:%Y-%m-%d-%H%M}-books-instructions.md"
    out.write_text(text)
    print(f"written to {out}")


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--worker":
        worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    else:
        main()
