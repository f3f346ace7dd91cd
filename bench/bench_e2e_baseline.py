"""Bare baseline consumers for the end-to-end bench: the `websockets` asyncio client that
subscribes to publicTrade topics (or, with ``--book-depth N``, ``orderbook.N`` topics) and
only decodes each message (orjson or json).

Prints one JSON line ``{"event":"result", "messages", "cpu_s", "wall_s", ...}`` for the
measured window: ``--warmup`` seconds after the first trade, then ``--count`` messages or
``--duration`` seconds, whichever is given.

    python bench/bench_e2e_baseline.py --url ws://127.0.0.1:PORT/v5/public/linear \
        --symbols 50 --decoder orjson --count 200000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from array import array
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_e2e_common import Window, emit_line, percentiles, symbol_names


@asynccontextmanager
async def warmed_up(args: argparse.Namespace) -> AsyncIterator[tuple[Any, Any, int]]:
    """Connect, subscribe, read until ``warmup`` s after the first trade; yield
    ``(ws, loads, messages counted so far)`` for the measured window."""
    loads = orjson.loads if args.decoder == "orjson" else json.loads
    ssl_ctx = None
    if args.url.startswith("wss://"):
        import ssl

        ssl_ctx = ssl.create_default_context(cafile=args.ca_file)
    prefix = f"orderbook.{args.book_depth}." if args.book_depth else "publicTrade."
    topics = [prefix + s for s in symbol_names(args.symbols)]
    async with connect(args.url, ssl=ssl_ctx, max_size=None, ping_interval=None,
                       compression=None) as ws:
        await ws.send(json.dumps({"op": "subscribe", "args": topics, "req_id": "b1"}))
        count = 0
        warm_until = None
        async for raw in ws:
            msg = loads(raw)
            if "topic" in msg:
                count += 1
                if warm_until is None:
                    warm_until = time.perf_counter() + args.warmup
                elif time.perf_counter() >= warm_until:
                    break
        yield ws, loads, count


async def consume(args: argparse.Namespace) -> dict[str, object]:
    """Fixed-count window: no clock read per message."""
    async with warmed_up(args) as (ws, loads, count):
        window, n0 = Window(), count
        window.start()
        stop_at = n0 + args.count
        async for raw in ws:
            msg = loads(raw)
            if "topic" in msg:
                count += 1
                if count >= stop_at:
                    break
        measured = window.stop()
    return {"messages": count - n0, **measured}


async def consume_for(args: argparse.Namespace) -> dict[str, object]:
    """Fixed-duration window with one clock check per message (cheap next to a recv).
    ``--latency``: each book's wall-clock arrival, once parsed, - its ``seq`` (the fake's
    ``--stamp``: the microsecond it built the message)."""
    async with warmed_up(args) as (ws, loads, count):
        latency = array("d") if args.latency else None
        wall = time.time
        window, n0 = Window(), count
        window.start()
        end = window.t0 + args.duration
        clock = time.perf_counter
        async for raw in ws:
            msg = loads(raw)
            if "topic" in msg:
                count += 1
                if latency is not None:
                    latency.append(wall() * 1000.0 - msg["data"]["seq"] / 1000.0)
            if clock() >= end:
                break
        measured = window.stop()
    out: dict[str, object] = {"messages": count - n0, **measured}
    if latency is not None:
        out["latency_ms"] = percentiles(latency, (50, 99, 99.9))
        out["latency_samples"] = len(latency)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True)
    p.add_argument("--symbols", type=int, default=50)
    p.add_argument("--book-depth", type=int, default=0,
                   help="subscribe the order books at this depth (0: the trades)")
    p.add_argument("--latency", action="store_true",
                   help="with --book-depth and --duration: time each book against its seq "
                        "(the fake's --stamp)")
    p.add_argument("--decoder", choices=["orjson", "json"], default="orjson")
    p.add_argument("--count", type=int, default=0, help="messages to measure")
    p.add_argument("--duration", type=float, default=0.0, help="seconds to measure")
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--ca-file", default=None)
    p.add_argument("--timeout", type=float, default=300.0)
    args = p.parse_args()
    if bool(args.count) == bool(args.duration):
        p.error("give exactly one of --count and --duration")
    if args.latency and not (args.book_depth and args.duration):
        p.error("--latency needs --book-depth and --duration")

    async def bounded() -> dict[str, object]:
        run = consume(args) if args.count else consume_for(args)
        return await asyncio.wait_for(run, args.timeout)

    result = asyncio.run(bounded())
    emit_line({"event": "result", "client": f"asyncio-websockets+{args.decoder}", **result})


if __name__ == "__main__":
    main()
