"""Medians of the key figures of several ``bench_pipeline.py`` JSON files, as a Markdown table.

    .venv/bin/python bench/bench_e2e_merge.py bench/results/pipeline-1.json \
        bench/results/pipeline-2.json > /tmp/table.md
"""

from __future__ import annotations

import json
import statistics
import sys
from typing import Any

FIGURES: list[tuple[str, str, str]] = [
    # (label, path in the JSON, format)
    ("flat out: streamer msg/s", "throughput.summary.streamer.msg_per_s", "{:,.0f}"),
    ("flat out: streamer CPU-s/100k", "throughput.summary.streamer.cpu_per_100k", "{:.3f}"),
    ("flat out: asyncio+orjson CPU-s/100k", "throughput.summary.orjson.cpu_per_100k", "{:.3f}"),
    ("flat out: asyncio+json CPU-s/100k", "throughput.summary.json.cpu_per_100k", "{:.3f}"),
    ("flat out: trio sans-I/O+orjson CPU-s/100k (diag)", "throughput.summary.trio.cpu_per_100k",
     "{:.3f}"),
    ("flat out: streamer / orjson (target <= 1.0)", "throughput.summary.ratio_cpu_vs_orjson",
     "{:.2f}x"),
    ("flat out: streamer / json", "throughput.summary.ratio_cpu_vs_json", "{:.2f}x"),
    ("1,000/s: streamer CPU-s/100k", "rates.1000.summary.streamer.cpu_per_100k", "{:.2f}"),
    ("1,000/s: asyncio+json CPU-s/100k", "rates.1000.summary.json.cpu_per_100k", "{:.2f}"),
    ("1,000/s: trio sans-I/O CPU-s/100k (diag)", "rates.1000.summary.trio.cpu_per_100k", "{:.2f}"),
    ("1,000/s: streamer / json (cryptofeed 0.74)", "rates.1000.summary.ratio_cpu_vs_json",
     "{:.2f}x"),
    ("5,000/s: streamer CPU-s/100k", "rates.5000.summary.streamer.cpu_per_100k", "{:.2f}"),
    ("5,000/s: asyncio+json CPU-s/100k", "rates.5000.summary.json.cpu_per_100k", "{:.2f}"),
    ("5,000/s: trio sans-I/O CPU-s/100k (diag)", "rates.5000.summary.trio.cpu_per_100k", "{:.2f}"),
    ("5,000/s: streamer / json (cryptofeed 0.80)", "rates.5000.summary.ratio_cpu_vs_json",
     "{:.2f}x"),
    ("20,000/s: streamer CPU-s/100k", "rates.20000.summary.streamer.cpu_per_100k", "{:.2f}"),
    ("20,000/s: asyncio+json CPU-s/100k", "rates.20000.summary.json.cpu_per_100k", "{:.2f}"),
    ("20,000/s: trio sans-I/O CPU-s/100k (diag)", "rates.20000.summary.trio.cpu_per_100k",
     "{:.2f}"),
    ("20,000/s: streamer / json (cryptofeed 0.90)", "rates.20000.summary.ratio_cpu_vs_json",
     "{:.2f}x"),
    ("latency p50 ms", "latency.latency_ms.p50", "{:.2f}"),
    ("latency p99 ms (target < 5)", "latency.latency_ms.p99", "{:.2f}"),
    ("latency p99.9 ms", "latency.latency_ms.p99.9", "{:.2f}"),
    ("latency max ms", "latency.latency_ms.max", "{:.2f}"),
    ("close: ms after boundary + waiter, p50", "latency.close_delta_ms.p50", "{:.2f}"),
    ("close: ms after boundary + waiter, max", "latency.close_delta_ms.max", "{:.2f}"),
    ("scale: RSS MB at the end", "scale.rss_mb_end", "{:.0f}"),
    ("scale: RSS growth MB/min (2nd half)", "scale.rss_growth_mb_per_min", "{:+.1f}"),
    ("scale: seconds to all subscribed", "scale.ready.subscribe_s", "{:.1f}"),
    ("tls: ws:// streamer msg/s", "tls.summary.ws.msg_per_s", "{:,.0f}"),
    ("tls: wss:// streamer msg/s", "tls.summary.wss.msg_per_s", "{:,.0f}"),
    ("tls: streamer wss/ws msg/s (target >= 0.7)", "tls.summary.wss_rate_vs_ws",
     "{:.2f}x"),
    ("tls: streamer wss/ws CPU/msg", "tls.summary.wss_cpu_vs_ws", "{:.2f}x"),
    ("tls: asyncio+orjson wss/ws msg/s", "tls.summary.wss_orjson_rate_vs_ws", "{:.2f}x"),
    ("scale: longest GC pause ms", "scale.gc.gen2.max_ms", "{:.0f}"),
]


def lookup(doc: dict[str, Any], path: str) -> float | None:
    node: Any = doc
    parts = path.split(".")
    i = 0
    while i < len(parts):
        key = parts[i]
        # keys such as "p99.9" contain a dot
        if isinstance(node, dict) and key not in node and i + 1 < len(parts):
            joined = key + "." + parts[i + 1]
            if joined in node:
                key = joined
                i += 1
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
        i += 1
    return float(node) if isinstance(node, (int, float)) else None


def main() -> None:
    docs = [json.load(open(path)) for path in sys.argv[1:]]
    print("| figure | " + " | ".join(f"run {i + 1}" for i in range(len(docs))) + " | median |")
    print("|---|" + "---|" * (len(docs) + 1))
    for label, path, fmt in FIGURES:
        values = [lookup(d, path) for d in docs]
        present = [v for v in values if v is not None]
        if not present:
            continue
        cells = [fmt.format(v) if v is not None else "-" for v in values]
        mid = fmt.format(statistics.median(present))
        print(f"| {label} | " + " | ".join(cells) + f" | {mid} |")


if __name__ == "__main__":
    main()
