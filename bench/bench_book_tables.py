"""Bench: the memory of full depth-1000 books as their prices come and go (no sockets).

``--books`` books of the simulator's full depth-1000 book (``SimBook(full=True)``, what the
books RSS row of ``bench_e2e_books.py`` serves), each fed its deltas at Bybit's depth-1000
pace (one every 200 ms, 5 a second) for ``--seconds`` simulated seconds, in one process per
variant: this tree's ``streamer.book``, and with ``--baseline COMMIT`` that commit's
``core/src/streamer/book.py`` (from git) on the same deltas. Every 30 simulated seconds: the
bytes of the books' level dicts (``sys.getsizeof`` of each side's dict, summed) and the
process's RSS (which also holds the simulator's own books, whose dicts churn the same way).
Writes ``bench/results/<date>-book-tables.md``.

    .venv/bin/python bench/bench_book_tables.py [--books 200] [--seconds 240]
                                                [--baseline 255f203]
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
EVERY_S = 30
PUSHES_PER_S = 5


def git(*argv: str) -> str:
    return subprocess.run(["git", *argv], capture_output=True, text=True, cwd=ROOT,
                          check=False).stdout.strip()


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def child(books: int, seconds: int, book_py: str | None) -> None:
    """One variant: prints one JSON line of samples."""
    if book_py:
        spec = importlib.util.spec_from_file_location("baseline_book", book_py)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        order_book = module.OrderBook
    else:
        from streamer.book import OrderBook as order_book
    from streamer_bybit.simulator.books import SimBook

    rng = random.Random(1)
    pairs = []
    for i in range(books):
        sim = SimBook(f"S{i}", 1000, rng, full=True)
        book = order_book()
        data = sim.snapshot_data()
        assert book.snapshot(data["b"], data["a"], data["u"]) == "ok"
        pairs.append((sim, book))
    samples = []
    for t in range(seconds + 1):
        if t % EVERY_S == 0:
            sizes = [sys.getsizeof(side._levels) for _, book in pairs
                     for side in (book.bids, book.asks)]
            samples.append({"t": t, "tables_mib": sum(sizes) / 2**20,
                            "side_min": min(sizes), "side_max": max(sizes),
                            "rss_mib": rss_mib()})
        for _ in range(PUSHES_PER_S):
            for sim, book in pairs:
                data = sim.step()
                assert book.delta(data["b"], data["a"], data["u"]) == "ok"
        for _, book in pairs:
            assert len(book.bids) <= 1000 and len(book.asks) <= 1000
    print(json.dumps(samples))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--books", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=240)
    parser.add_argument("--baseline", default=None, help="a commit whose book.py to compare")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.books, args.seconds, args.child or None)
        return
    load0 = os.getloadavg()
    commit = (git("rev-parse", "HEAD"), git("log", "-1", "--format=%s"))
    dirty = git("status", "--porcelain", "--untracked-files=no")
    variants: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.baseline:
            path = Path(tmp) / "book.py"
            path.write_text(git("show", f"{args.baseline}:core/src/streamer/book.py") + "\n")
            variants.append((f"baseline {args.baseline}", str(path)))
        variants.append(("this tree", ""))
        results: dict[str, Any] = {}
        for name, book_py in variants:
            out = subprocess.run([sys.executable, __file__, "--books", str(args.books),
                                  "--seconds", str(args.seconds), "--child", book_py],
                                 capture_output=True, text=True, check=True, cwd=ROOT)
            results[name] = json.loads(out.stdout.strip().splitlines()[-1])
    lines = [
        f"# bench_book_tables.py ({dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC)",
        "",
        f"Command: `.venv/bin/python bench/bench_book_tables.py {' '.join(sys.argv[1:])}`  ",
        f"Commit: `{commit[0]}` ({commit[1]}), "
        + ("DIRTY" if dirty else "clean") + "  ",
        f"{platform.python_implementation()} {platform.python_version()}; load average "
        f"(1, 5, 15 min) at the start / end: {tuple(round(x, 2) for x in load0)} / "
        f"{tuple(round(x, 2) for x in os.getloadavg())}",
        "",
        f"{args.books} full depth-1000 books of the simulator, {PUSHES_PER_S} deltas a second "
        f"each, {args.seconds} simulated seconds, one process per variant. tables: the books' "
        "level dicts (sys.getsizeof, both sides, all books); side: one side's dict, "
        "smallest / largest; RSS: the process's (the simulator's books included).",
        "",
        "| variant | s | tables MiB | side bytes (min / max) | RSS MiB |",
        "|---|---|---|---|---|",
    ]
    for name, samples in results.items():
        for s in samples:
            lines.append(f"| {name} | {s['t']} | {s['tables_mib']:.1f} | {s['side_min']:,} / "
                         f"{s['side_max']:,} | {s['rss_mib']:.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    out_path = RESULTS / f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d-%H%M}-book-tables.md"
    out_path.write_text(text)
    print(f"written to {out_path}")


if __name__ == "__main__":
    main()
