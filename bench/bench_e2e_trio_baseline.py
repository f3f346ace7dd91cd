"""Diagnostic baseline: the source's own trio transport (streamer.net.WebSocket,
websockets' sans-I/O protocol, one list of messages per socket read) + orjson per message,
without the pipeline. Separates what trio itself costs per wake-up from what the pipeline
(decoding to events, aggregation, the sink's task) adds.

Same measuring protocol and output as bench_e2e_baseline.py.
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
import time
from pathlib import Path

import orjson
import trio

from streamer.net import WebSocket

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_e2e_common import cpu_seconds, emit_line, symbol_names


async def consume(args: argparse.Namespace) -> dict[str, object]:
    ctx = ssl.create_default_context(cafile=args.ca_file) if args.ca_file else None
    loads = orjson.loads
    with trio.fail_after(args.timeout):
        ws = await WebSocket.connect(args.url, ssl_context=ctx)
        topics = [f"publicTrade.{s}" for s in symbol_names(args.symbols)]
        await ws.send_text(json.dumps({"op": "subscribe", "args": topics, "req_id": "t1"}))
        count = 0
        warm_until = None
        while warm_until is None or time.perf_counter() < warm_until:
            for raw in await ws.receive():
                if "topic" in loads(raw):
                    count += 1
            if count and warm_until is None:
                warm_until = time.perf_counter() + args.warmup
        c0, t0, n0 = cpu_seconds(), time.perf_counter(), count
        if args.count:
            stop_at = n0 + args.count
            while count < stop_at:
                for raw in await ws.receive():
                    if "topic" in loads(raw):
                        count += 1
        else:
            with trio.move_on_after(args.duration):
                while True:
                    for raw in await ws.receive():
                        if "topic" in loads(raw):
                            count += 1
        c1, t1 = cpu_seconds(), time.perf_counter()
        await ws.aclose()
    return {"messages": count - n0, "cpu_s": c1 - c0, "wall_s": t1 - t0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--url", required=True)
    p.add_argument("--symbols", type=int, default=50)
    p.add_argument("--decoder", default="orjson", choices=["orjson"])
    p.add_argument("--count", type=int, default=0)
    p.add_argument("--duration", type=float, default=0.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--ca-file", default=None)
    p.add_argument("--timeout", type=float, default=300.0)
    args = p.parse_args()
    if bool(args.count) == bool(args.duration):
        p.error("give exactly one of --count and --duration")
    result = trio.run(consume, args)
    emit_line({"event": "result", "client": "trio-sansio+orjson", **result})


if __name__ == "__main__":
    main()
