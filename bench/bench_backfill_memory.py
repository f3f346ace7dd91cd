"""Bench: RSS of the streamer while first-candle backfills wait, against the "partial" run.

    .venv/bin/python bench/bench_backfill_memory.py                 # 3 runs of ~30 s
    .venv/bin/python bench/bench_backfill_memory.py --duration 25 --rate 20000

Each run starts a fresh fake Bybit in its own process (``python -m streamer_bybit.simulator``,
50 symbols, ``--rate`` trade messages/s on linear) and the streamer child
(``bench_e2e_streamer.py``: ``bybit.linear -> klines.from_trades (1m 5m 1h 4h 1D) ->
bench.count``), then samples the streamer's RSS every ``--progress`` seconds over
``--duration`` seconds:

- ``partial``: ``first_candle = "partial"``, no history asked (the reference);
- ``backfill-failing``: ``first_candle = "backfill"``, GET /v5/market/kline answers 503;
- ``backfill-slow``: ``first_candle = "backfill"``, GET /v5/market/kline answers after
  ``--kline-delay`` seconds (5 by default; the transform waits up to 10 s).

Prints one JSON line per run and a verdict: the peak RSS of each backfill run must stay
within ``--budget-mib`` (10) of the partial run's peak.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_e2e_common import PYTHON, Children, fake_env

BENCH = Path(__file__).resolve().parent


def one_run(args: argparse.Namespace, name: str, first_candle: str,
            fake_extra: list[str]) -> dict[str, Any]:
    children = Children()
    try:
        fake = children.start(
            [PYTHON, "-m", "streamer_bybit.simulator", "--symbols", str(args.symbols), "--rate",
             str(args.rate), "--duration", str(args.duration + 60), "--idle-timeout", "0",
             "--no-tickers", *fake_extra], fake_env(), name="simulator")
        info = fake.read_json(timeout=30)
        streamer = children.start(
            [PYTHON, str(BENCH / "bench_e2e_streamer.py"), "--ws-linear", info["ws_linear"],
             "--rest", info["rest"], "--symbols", str(args.symbols),
             "--first-candle", first_candle, "--duration", str(args.duration),
             "--warmup", "1", "--progress", str(args.progress),
             "--timeout", str(args.duration + 60)], name=f"streamer-{name}")
        ready = streamer.read_json(timeout=60, want="ready")
        result = streamer.read_json(timeout=args.duration + 60, want="result")
        samples = [line["rss_kib"] for line in streamer.lines if "rss_kib" in line]
        metrics = result["metrics"].get("klines", {})
        wall = result["wall_s"] or 1.0
        return {
            "run": name,
            "msg_per_s": round(result["messages"] / wall),
            "rss_ready_mib": round(ready["rss_kib"] / 1024, 1),
            "rss_peak_mib": round(max(samples) / 1024, 1),
            "rss_end_mib": round(result["rss_kib"] / 1024, 1),
            "rss_samples_mib": [round(s / 1024, 1) for s in samples],
            "backfill": {k: v for k, v in metrics.items() if k.startswith("backfill")},
        }
    finally:
        children.stop_all()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=20_000.0)
    p.add_argument("--symbols", type=int, default=50)
    p.add_argument("--duration", type=float, default=25.0)
    p.add_argument("--progress", type=float, default=2.5)
    p.add_argument("--kline-delay", type=float, default=5.0)
    p.add_argument("--budget-mib", type=float, default=10.0)
    args = p.parse_args()
    runs = [
        one_run(args, "partial", "partial", []),
        one_run(args, "backfill-failing", "backfill", ["--kline-fail"]),
        one_run(args, "backfill-slow", "backfill", ["--kline-delay", str(args.kline_delay)]),
    ]
    reference = runs[0]["rss_peak_mib"]
    ok = True
    for run in runs:
        run["peak_over_partial_mib"] = round(run["rss_peak_mib"] - reference, 1)
        ok &= run["peak_over_partial_mib"] <= args.budget_mib
        print(json.dumps(run), flush=True)
    print(json.dumps({"verdict": "pass" if ok else "FAIL", "budget_mib": args.budget_mib}))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
