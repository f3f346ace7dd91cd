"""What serving /metrics costs the hot path: the same pipeline with and without
``[streamer] metrics``, interleaved, against the fake Bybit in its own process.

    .venv/bin/python bench/bench_metrics.py [--repeat 3] [--count 300000] [--rate 5000]

- flat out: 50 symbols, the fake as fast as it writes; ``--count`` trades per run;
- fixed rate: ``--rate`` msg/s for ``--duration`` seconds (CPU per message at a realistic
  load, where each socket read is a wake-up).

The pipeline is bench_e2e_streamer.py's (bybit.linear -> klines.from_trades 1m 5m 1h 4h 1D
-> counting sink). With metrics on it also serves /metrics on 127.0.0.1 and scrapes it every
``--scrape`` seconds (default 1 s; Prometheus usually scrapes every 15 s), in the same
process, so the scrapes' own CPU is counted. Prints one line per run and a summary of
CPU-s per 100k messages (median of the runs) and the ratio with/without.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_e2e_common import BENCH, PYTHON, Children, start_fake

INTERVALS = "1m,5m,1h,4h,1D"


def run_streamer(children: Children, info: dict[str, Any], *extra: str) -> dict[str, Any]:
    argv = [PYTHON, str(BENCH / "bench_e2e_streamer.py"), "--ws-linear", info["ws_linear"],
            "--rest", info["rest"], "--intervals", INTERVALS, "--timeout", "120", *extra]
    child = children.start(argv, name="streamer")
    try:
        result = child.read_json(150, want="result")
        child.wait(15)
    finally:
        children.stop(child)
    result["cpu_per_100k"] = result["cpu_s"] / result["messages"] * 100_000
    result["msg_per_s"] = result["messages"] / result["wall_s"]
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--count", type=int, default=300_000)
    p.add_argument("--rate", type=float, default=5000.0)
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument("--scrape", type=float, default=1.0)
    args = p.parse_args()
    children = Children()
    summary: dict[str, dict[str, float]] = {}
    try:
        for label, rate, window in (("flat out", 0.0, ["--count", str(args.count)]),
                                    (f"{args.rate:,.0f} msg/s", args.rate,
                                     ["--duration", str(args.duration)])):
            fake, info = start_fake(children, symbols=50, rate=rate)
            runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
            try:
                for _ in range(args.repeat):
                    for mode in ("off", "on"):  # interleaved: drift hits both alike
                        extra = ["--metrics", str(args.scrape)] if mode == "on" else []
                        r = run_streamer(children, info, *window, *extra)
                        runs[mode].append(r)
                        print(json.dumps({"section": label, "metrics": mode,
                                          "msg_per_s": round(r["msg_per_s"]),
                                          "cpu_per_100k": round(r["cpu_per_100k"], 3),
                                          "scrapes": r.get("scrapes", 0),
                                          "scrape_bytes": r.get("scrape_bytes", 0)}),
                              flush=True)
            finally:
                children.stop(fake)
            off = statistics.median(r["cpu_per_100k"] for r in runs["off"])
            on = statistics.median(r["cpu_per_100k"] for r in runs["on"])
            summary[label] = {"off_cpu_per_100k": off, "on_cpu_per_100k": on,
                              "ratio": on / off,
                              "off_msg_per_s": statistics.median(r["msg_per_s"]
                                                                 for r in runs["off"]),
                              "on_msg_per_s": statistics.median(r["msg_per_s"]
                                                                for r in runs["on"])}
    finally:
        children.stop_all()
    print("\n| run | CPU-s/100k without | with /metrics | ratio | msg/s without / with |")
    print("|---|---|---|---|---|")
    for label, s in summary.items():
        print(f"| {label} | {s['off_cpu_per_100k']:.3f} | {s['on_cpu_per_100k']:.3f} | "
              f"{s['ratio']:.3f}x | {s['off_msg_per_s']:,.0f} / {s['on_msg_per_s']:,.0f} |")


if __name__ == "__main__":
    main()
