"""Bench: what exact volumes and turnovers cost per trade in the kline aggregator, A/B.

``KlineAggregator.add_trades`` (and ``close_due`` at each minute boundary of trade time) over
the same trades, in a fresh process per run, for each source tree and turnover setting:

- ``--base REV`` (default: the commit before exact amounts, when volumes were float sums and
  a turnover, when on, a float sum too), taken out of git into a temporary folder,
- the checkout this file is in (exact sums in integer units).

Two arrival shapes, because feeds differ: ``paced`` (one trade per call, 50 symbols in
turn, as one-trade messages arriving evenly) and ``batched`` (20 trades of one symbol per
call, as a busy symbol's messages). Sizes and prices are decimal strings as Bybit writes them,
with as many distinct values as the hot-path bench. CPU of the process only
(``time.process_time``), 5 intervals (1m 5m 1h 4h 1D). Rounds rotate the order of the runs;
each figure is the median over the rounds. Writes ``bench/results/<UTC time>-exact-amounts.md``.

    .venv/bin/python bench/bench_exact_amounts.py [--rounds 5] [--trades 300000] [--base REV]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from bench_trees import ROOT, commit_label, extract, machine_line, source_path

HERE = Path(__file__).resolve().parent
PARTS = ("core", "plugins/aggregate")
DEFAULT_BASE = "ade5291^"
INTERVALS_MS = [60_000, 300_000, 3_600_000, 14_400_000, 86_400_000]
SYMBOLS = [f"SYM{i}USDT" for i in range(50)]
SHAPES = ("paced", "batched")


def one_run(shape: str, n_trades: int, turnover: bool) -> float:
    """CPU microseconds per trade of one pass (runs inside the tree under test)."""
    from streamer import Trade
    from streamer_aggregate.aggregator import KlineAggregator

    batch = 1 if shape == "paced" else 20
    ts = 1_700_000_000_000
    batches = []
    k = 0
    for b in range(n_trades // batch):
        rows = []
        for _ in range(batch):
            sym = SYMBOLS[k % len(SYMBOLS)] if batch == 1 else SYMBOLS[b % len(SYMBOLS)]
            ts += 7
            rows.append(Trade("linear", sym, ts, "Buy", f"{30000 + k % 50}.{k % 100:02d}",
                              f"0.{k % 997 + 1:03d}", f"{k}-abc"))
            k += 1
        batches.append(rows)
    agg = KlineAggregator(INTERVALS_MS, first_candle="partial", turnover=turnover)
    clock = time.process_time
    next_close = (batches[0][0].ts // 60_000 + 1) * 60_000
    t0 = clock()
    for rows in batches:
        agg.add_trades(rows)
        last = rows[-1].ts
        if last >= next_close:
            agg.close_due(last)
            next_close = (last // 60_000 + 1) * 60_000
    return (clock() - t0) * 1e6 / (len(batches) * batch)


def measure(tree: Path, shape: str, n_trades: int, turnover: bool) -> float:
    env = dict(os.environ, PYTHONPATH=source_path(tree, PARTS))
    out = subprocess.run(
        [sys.executable, __file__, "--one", shape, "--trades", str(n_trades)]
        + (["--turnover"] if turnover else []),
        check=True, capture_output=True, text=True, env=env, cwd=tempfile.gettempdir()).stdout
    return float(json.loads(out.splitlines()[-1])["us_per_trade"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--trades", type=int, default=300_000)
    p.add_argument("--base", default=DEFAULT_BASE, help="the git revision to compare with")
    p.add_argument("--one", choices=SHAPES, help=argparse.SUPPRESS)
    p.add_argument("--turnover", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args()
    if args.one:
        print(json.dumps({"us_per_trade": one_run(args.one, args.trades, args.turnover)}))
        return

    base = commit_label(args.base)
    head_label = commit_label("HEAD", (*PARTS, "bench"))
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-exact-") as tmp:
        base_tree = Path(tmp)
        extract(args.base, base_tree, PARTS)
        runs = [(tree_name, shape, turnover)
                for tree_name in ("base", "head") for shape in SHAPES for turnover in (False, True)]
        got: dict[tuple[str, str, bool], list[float]] = {r: [] for r in runs}
        for rnd in range(args.rounds):
            order = runs[rnd % len(runs):] + runs[:rnd % len(runs)]
            for tree_name, shape, turnover in order:
                tree = base_tree if tree_name == "base" else ROOT
                value = measure(tree, shape, args.trades, turnover)
                got[(tree_name, shape, turnover)].append(value)
                print(f"round {rnd + 1}: {tree_name} {shape} turnover={turnover}: "
                      f"{value:.3f} us/trade", flush=True)
    load1 = os.getloadavg()

    def cell(key: tuple[str, str, bool]) -> str:
        values = got[key]
        return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"

    def ratio(a: tuple[str, str, bool], b: tuple[str, str, bool]) -> str:
        return f"{statistics.median(got[a]) / statistics.median(got[b]):.2f}x"

    now = datetime.now(timezone.utc)
    lines = [
        f"# Exact volumes and turnovers: aggregator CPU per trade, A/B "
        f"({now:%Y-%m-%d %H:%M} UTC)",
        "",
        f"Command: `python bench/bench_exact_amounts.py --rounds {args.rounds} --trades "
        f"{args.trades} --base {args.base}`",
        "",
        f"Commits: base {base} (`{args.base}`: float sums), head {head_label} (exact sums in "
        "integer units).",
        "",
        machine_line(load0, load1),
        "",
        f"Settings: {args.trades:,} trades per run, a fresh process per run, "
        "`KlineAggregator(1m 5m 1h 4h 1D, first_candle=partial)` `add_trades` + `close_due` at "
        "each minute of trade time; `paced`: one trade per call over 50 symbols in turn; "
        "`batched`: 20 trades of one symbol per call; trades 7 ms apart; 997 distinct sizes, "
        f"5,000 distinct prices. CPU of the process (`process_time`). {args.rounds} rounds, the "
        "order of the 8 runs rotated each round. Median (min-max) microseconds per trade.",
        "",
        "| arrivals | turnover | base (float sums) | head (exact sums) | head / base |",
        "|---|---|---|---|---|",
    ]
    for shape in SHAPES:
        for turnover in (False, True):
            lines.append(
                f"| {shape} | {'on' if turnover else 'off'} | {cell(('base', shape, turnover))} "
                f"| {cell(('head', shape, turnover))} "
                f"| {ratio(('head', shape, turnover), ('base', shape, turnover))} |")
    lines += [
        "",
        "Head with turnover on (the default now) against base with turnover off (the default "
        "before): " + ", ".join(
            f"{shape} {ratio(('head', shape, True), ('base', shape, False))}"
            for shape in SHAPES) + ".",
        "",
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{now:%Y-%m-%d-%H%M}-exact-amounts.md"
    path.write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"written: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


if __name__ == "__main__":
    main()
