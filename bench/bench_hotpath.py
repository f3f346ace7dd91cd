"""Bench: the Bybit source's per-message work in one process, no sockets, no scheduler.

One socket read as the fake sends it flat out (300 one-trade publicTrade frames of ~215
bytes over 50 symbols, ~64 KiB) goes through the three steps the reader runs per read:

- split: ``MessageReader.receive_data`` (frame headers -> payloads),
- decode: ``MessageDecoder.decode_read`` (payloads -> Trade events), then the hold book's
  ``live`` (idle: it notes each trade in the gap-recovery window, as a connection wires it),
- aggregate: ``KlineAggregator.add_trades`` (1m 5m 1h 4h 1D, as the light pipeline; with
  ``--turnover`` the klines' turnover too, as ``klines.from_trades`` by default).

Each read has new trade times (7 ms apart), so candles open and close as in a live run.
Microseconds of the process's CPU per message for each step. Each run is a fresh
interpreter doing ``--passes`` passes of ``--reads`` reads (its figure: the median pass);
``--rounds`` runs per tree. With ``--base REV`` the same steps run alternately on that commit
(taken out of git: its core, Bybit and aggregate sources on ``PYTHONPATH``, the installed
libraries the same) and on this checkout, the order swapped every round: an A/B of hot-path
changes in the same session. Each figure is the median over the rounds. What the end-to-end
bench adds on top: wake-ups, socket reads, routing, sinks. Writes
``bench/results/<UTC time>-hotpath.md``.

    .venv/bin/python bench/bench_hotpath.py [--base REV] [--rounds 5] [--reads 300]
        [--passes 7] [--turnover]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from bench_trees import ROOT, commit_label, extract, machine_line, source_path

if TYPE_CHECKING:
    from streamer import Event, Metrics
    from streamer_bybit.decode import MessageDecoder

#: The sources a run imports: the tree under test's, through PYTHONPATH.
PARTS = ("core", "plugins/bybit", "plugins/aggregate")
STEPS = ("split (frame headers -> payloads)", "decode + trade window",
         "aggregate (5 intervals)")

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
    from websockets.client import ClientProtocol
    from websockets.protocol import State
    from websockets.uri import parse_uri

    from streamer import Metrics, RateLimitedLog
    from streamer_aggregate.aggregator import KlineAggregator
    from streamer_bybit.decode import MessageDecoder
    from streamer_bybit.tickers import PriceTracker, TickerBook
    try:
        from streamer.net._websocket import MessageReader
    except ImportError:  # a commit from before the WebSocket client moved into the core
        from streamer_bybit.transport import MessageReader  # type: ignore[no-redef]

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


def one_run(args: argparse.Namespace) -> list[float]:
    """The median pass of each step, in this interpreter (the tree on its path)."""
    reads = make_reads(args.reads)
    passes = [one_pass(reads, args.turnover) for _ in range(args.passes)]
    return [statistics.median(x[i] for x in passes) for i in range(len(STEPS))]


def measure(tree: Path, args: argparse.Namespace) -> list[float]:
    env = dict(os.environ, PYTHONPATH=source_path(tree, PARTS))
    command = [sys.executable, __file__, "--one", "--reads", str(args.reads), "--passes",
               str(args.passes)] + (["--turnover"] if args.turnover else [])
    out = subprocess.run(command, check=True, capture_output=True, text=True, env=env,
                         cwd=tempfile.gettempdir()).stdout
    return [float(x) for x in json.loads(out.splitlines()[-1])]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", help="a git revision to compare this checkout with")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--reads", type=int, default=300)
    p.add_argument("--passes", type=int, default=7)
    p.add_argument("--turnover", action="store_true", help="klines with turnover")
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = p.parse_args()
    if args.one:
        print(json.dumps(one_run(args)))
        return
    sides = ["base", "head"] if args.base else ["head"]
    got: dict[str, list[list[float]]] = {side: [] for side in sides}
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-hotpath-") as tmp:
        trees = {"head": ROOT, "base": Path(tmp)}
        if args.base:
            extract(args.base, trees["base"], PARTS)
        for rnd in range(args.rounds):
            for side in sides if rnd % 2 == 0 else sides[::-1]:
                steps = measure(trees[side], args)
                got[side].append(steps)
                print(f"round {rnd + 1} {side}: " + ", ".join(f"{x:.3f}" for x in steps)
                      + f" = {sum(steps):.3f} us/msg", flush=True)
    load1 = os.getloadavg()

    def cell(side: str, i: int | None) -> str:
        values = [sum(r) if i is None else r[i] for r in got[side]]
        return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"

    labels = {"head": f"head {commit_label('HEAD', (*PARTS, 'bench'))}"}
    if args.base:
        labels["base"] = f"base {commit_label(args.base)} (`{args.base}`)"
    now = datetime.now(timezone.utc)
    command = "python bench/bench_hotpath.py" + (f" --base {args.base}" if args.base else "") \
        + f" --rounds {args.rounds} --reads {args.reads} --passes {args.passes}" \
        + (" --turnover" if args.turnover else "")
    lines = [
        f"# bench_hotpath.py: the Bybit source's per-message steps in one process "
        f"({now:%Y-%m-%d %H:%M} UTC)", "",
        f"Command: `{command}`", "",
        "Trees: " + ", ".join(labels[side] for side in sides) + ".", "",
        machine_line(load0, load1), "",
        f"Settings: {args.reads} reads of {MESSAGES_PER_READ} one-trade publicTrade messages "
        f"(~64 KiB each) over {len(SYMBOLS)} symbols; klines 1m 5m 1h 4h 1D, first candles "
        f"partial, turnover {'on' if args.turnover else 'off'}; a fresh interpreter per run, "
        f"{args.passes} passes per run (its figure: the median pass), {args.rounds} rounds"
        + (", base and head alternated, the order swapped every round" if args.base else "")
        + "; the process's CPU (`process_time`). Median (min-max) over the rounds, "
        "microseconds per message.", "",
        "| step | " + " | ".join(labels[side] for side in sides)
        + (" | head / base |" if args.base else " |"),
        "|---|" + "---|" * (len(sides) + (1 if args.base else 0)),
    ]
    for i, step in enumerate((*STEPS, "total")):
        index = None if step == "total" else i
        row = f"| {step} | " + " | ".join(cell(side, index) for side in sides) + " |"
        if args.base:
            med = {side: statistics.median(sum(r) if index is None else r[index]
                                           for r in got[side]) for side in sides}
            row += f" {med['head'] / med['base']:.2f}x |"
        lines.append(row)
    lines.append("")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{now:%Y-%m-%d-%H%M}-hotpath.md"
    path.write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"written: {path}")


if __name__ == "__main__":
    main()
