"""Diagnostic baseline: the source's own trio transport (streamer.net.WebSocket,
websockets' sans-I/O protocol, one list of messages per socket read) + orjson per message,
without the pipeline; with ``--coalesce-ms`` it waits after a small read exactly as the
source's reader does, so at a fixed rate it makes the same reads as the pipeline.
Separates what trio itself costs per wake-up from what the pipeline
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
from typing import Any

import orjson
import trio

from streamer.net import WebSocket
from streamer_bybit.connection import COALESCE_SKIP

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_e2e_common import Window, emit_line, symbol_names

try:  # the source's coalescing timer (a timerfd); older installs (bench_ab.py) lack it
    from streamer.net import WakeTimer
except ImportError:
    WakeTimer = None  # type: ignore[assignment,misc]


class _TrioTimer:
    """trio's own timer (a cancel-scope deadline), as the source waited before WakeTimer."""

    async def sleep(self, seconds: float) -> None:
        await trio.sleep(seconds)

    def close(self) -> None:
        pass


def make_timer(kind: str) -> Any:
    """``source``: what the installed source's reader waits on; ``trio``: trio.sleep."""
    if kind == "source" and WakeTimer is not None:
        return WakeTimer()
    return _TrioTimer()


async def consume(args: argparse.Namespace) -> dict[str, object]:
    ctx = ssl.create_default_context(cafile=args.ca_file) if args.ca_file else None
    loads = orjson.loads
    coalesce = args.coalesce_ms / 1000.0
    with trio.fail_after(args.timeout):
        ws = await WebSocket.connect(args.url, ssl_context=ctx)
        topics = [f"publicTrade.{s}" for s in symbol_names(args.symbols)]
        await ws.send_text(json.dumps({"op": "subscribe", "args": topics, "req_id": "t1"}))
        count = reads = 0
        waited = False
        timer = make_timer(args.timer)

        async def read_once() -> None:
            # As the source's reader does: after a read under COALESCE_SKIP, wait until
            # ``coalesce`` after it, so the next read carries what arrived meanwhile.
            nonlocal count, reads, waited
            payloads = await ws.receive(checkpointed=waited)
            t_read = trio.current_time()
            reads += 1
            for raw in payloads:
                if "topic" in loads(raw):
                    count += 1
            waited = False
            if coalesce and ws.last_read_size < COALESCE_SKIP:
                left = t_read + coalesce - trio.current_time()
                waited = left > 0
                if waited:
                    await timer.sleep(left)

        warm_until = None
        while warm_until is None or time.perf_counter() < warm_until:
            await read_once()
            if count and warm_until is None:
                warm_until = time.perf_counter() + args.warmup
        window, n0, r0 = Window(), count, reads
        window.start()
        if args.count:
            stop_at = n0 + args.count
            while count < stop_at:
                await read_once()
        else:
            with trio.move_on_after(args.duration):
                while True:
                    await read_once()
        measured = window.stop()
        await ws.aclose()
        timer.close()
    return {"messages": count - n0, "reads": reads - r0, **measured}


async def timer_only(args: argparse.Namespace) -> dict[str, object]:
    """No socket: the coalescing wait alone (``--timer``), ``coalesce`` in a loop, for
    ``--duration`` s after ``--warmup`` s. What one wake-up of that timer costs here."""
    coalesce = args.coalesce_ms / 1000.0
    timer = make_timer(args.timer)
    with trio.move_on_after(args.warmup):
        while True:
            await timer.sleep(coalesce)
    window, cycles = Window(), 0
    window.start()
    with trio.move_on_after(args.duration):
        while True:
            await timer.sleep(coalesce)
            cycles += 1
    measured = window.stop()
    timer.close()
    return {"messages": 0, "reads": cycles, **measured}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--url", required=True)
    p.add_argument("--symbols", type=int, default=50)
    p.add_argument("--decoder", default="orjson", choices=["orjson"])
    p.add_argument("--count", type=int, default=0)
    p.add_argument("--duration", type=float, default=0.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--coalesce-ms", type=float, default=0.0,
                   help="wait like the source's reader after a small read (0: never)")
    p.add_argument("--timer-only", action="store_true",
                   help="no connection: only the coalescing wait, in a loop (needs "
                        "--coalesce-ms and --duration)")
    p.add_argument("--timer", choices=["source", "trio"], default="source",
                   help="the coalescing wait: the installed source's (WakeTimer where it "
                        "has one) or trio.sleep (a cancel-scope deadline)")
    p.add_argument("--ca-file", default=None)
    p.add_argument("--timeout", type=float, default=300.0)
    args = p.parse_args()
    if bool(args.count) == bool(args.duration):
        p.error("give exactly one of --count and --duration")
    if args.timer_only and not (args.coalesce_ms and args.duration):
        p.error("--timer-only needs --coalesce-ms and --duration")
    result = trio.run(timer_only if args.timer_only else consume, args)
    emit_line({"event": "result", "client": "trio-sansio+orjson", **result})


if __name__ == "__main__":
    main()
