"""The streamer side of the end-to-end bench: one process running a real pipeline.

    bybit.linear [+ bybit.spot] -> klines.from_trades -> bench.count

``bench.count`` is a sink registered in-process with ``PluginManager.register``; its inputs
are the sources *and* the kline transform, so it sees every trade (that is how messages are
counted: one trade per message) and every kline. Routing is inline (core/runtime.py): the
klines of a socket read are queued before its trades, on the same task, so both reach the
sink in the same delivery.

Prints JSON lines: ``{"event":"ready", ...}`` once subscribed, ``{"event":"progress", ...}``
every ``--progress`` seconds if asked, and ``{"event":"result", ...}`` for the measured
window (``--warmup`` seconds after the first trade, then ``--count`` trades or
``--duration`` seconds).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from array import array
from pathlib import Path
from typing import Any

import attrs
import trio
from streamer.api import Context
from streamer.config import load_config_text
from streamer.events import Kline, Ticker, Trade
from streamer.hookspecs import RegisterType, hookimpl
from streamer.inbox import Inbox
from streamer.plugins import load_plugin_manager
from streamer.runtime import Pipeline

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_e2e_common import cpu_seconds, emit_line, rss_kib, symbol_names  # noqa: E402


@attrs.define
class CountConfig:
    #: Record trade -> sink latency (ms) for every trade of the measured window.
    latency: bool = False
    #: Waiter latency of the kline transform, to turn closed-kline arrival into a delta.
    waiter_ms: int = 100


class CountingSink:
    """Counts trades, tickers, kline updates and closed klines; optionally times them.

    Wakes the runner through ``target`` (a trade count) instead of being polled, so the
    bench adds no wake-up of its own per message.
    """

    def __init__(self, config: CountConfig, context: Context) -> None:
        self.config = config
        self.trades = 0
        self.tickers = 0
        self.kline_updates = 0
        self.klines_closed = 0
        self.deliveries = 0
        self.first_trade = trio.Event()
        self.target: int | None = None
        self.reached = trio.Event()
        self.recording = False
        #: ms from the trade's T (the fake's wall clock) to the delivery holding its kline.
        self.latency = array("d")
        #: deliveries with trades but no kline update (should stay 0 with every_trade)
        self.trades_without_kline = 0
        #: (interval_ms, end_ms, ms after boundary + waiter) per closed kline
        self.close_deltas: list[tuple[int, int, float]] = []

    async def run(self, inbox: Inbox, *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        timed = self.config.latency
        waiter = self.config.waiter_ms
        wall = time.time
        while events := await inbox.get():
            now_ms = wall() * 1000.0
            self.deliveries += 1
            trades = 0
            updates = 0
            for e in events:
                kind = type(e)
                if kind is Trade:
                    trades += 1
                    if timed and self.recording:
                        self.latency.append(now_ms - e.ts)  # type: ignore[union-attr]
                elif kind is Kline:
                    if e.closed:  # type: ignore[union-attr]
                        self.klines_closed += 1
                        if timed:
                            end = e.timestamp + e.interval  # type: ignore[union-attr]
                            self.close_deltas.append(
                                (e.interval, end, now_ms - end - waiter))  # type: ignore[union-attr]
                    else:
                        updates += 1
                elif kind is Ticker:
                    self.tickers += 1
            if trades:
                if not self.trades:
                    self.first_trade.set()
                self.trades += trades
                if timed and self.recording and not updates:
                    self.trades_without_kline += 1
                if self.target is not None and self.trades >= self.target:
                    self.reached.set()
            self.kline_updates += updates


class BenchPlugin:
    @staticmethod
    @hookimpl
    def streamer_register_sinks(register: RegisterType) -> None:
        register("bench.count", CountConfig, CountingSink)


def toml_list(items: list[str]) -> str:
    return json.dumps(items)


def build_toml(args: argparse.Namespace) -> str:
    symbols = symbol_names(args.symbols)
    streams = args.streams.split(",")
    intervals = args.intervals.split(",")
    sources: list[tuple[str, str, str]] = [("linear", "bybit.linear", args.ws_linear)]
    if args.ws_spot:
        sources.append(("spot", "bybit.spot", args.ws_spot))
    parts = ['[streamer]\nlog_level = "WARNING"\nstats_interval = 0\n']
    for name, kind, url in sources:
        parts.append(f'[[sources]]\nname = "{name}"\ntype = "{kind}"\n'
                     f"symbols = {toml_list(symbols)}\nstreams = {toml_list(streams)}\n"
                     f'url = "{url}"\nrest_url = "{args.rest}"\n'
                     + (f'ca_file = "{args.ca_file}"\n' if args.ca_file else ""))
    names = [s[0] for s in sources]
    parts.append(f'[[transforms]]\nname = "klines"\ntype = "klines.from_trades"\n'
                 f"inputs = {toml_list(names)}\nintervals = {toml_list(intervals)}\n"
                 f'updates = "{args.updates}"\nfirst_candle = "{args.first_candle}"\n'
                 f'rest_url = "{args.rest}"\nwaiter_latency_ms = {args.waiter_ms}\n')
    parts.append(f'[[sinks]]\nname = "count"\ntype = "bench.count"\n'
                 f"inputs = {toml_list([*names, 'klines'])}\nqueue_size = 100000\n"
                 f"latency = {'true' if args.latency else 'false'}\n"
                 f"waiter_ms = {args.waiter_ms}\n")
    return "\n".join(parts)


def percentiles(values: list[float] | array[float], ps: tuple[float, ...]) -> dict[str, float]:
    if not values:
        return {}
    data = sorted(values)
    out = {}
    for p in ps:
        k = min(len(data) - 1, max(0, int(round(p / 100 * (len(data) - 1)))))
        out[f"p{p:g}"] = data[k]
    out["max"] = data[-1]
    out["min"] = data[0]
    out["mean"] = sum(data) / len(data)
    return out


async def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    pm = load_plugin_manager(environ={})
    pm.register(BenchPlugin(), "bench")
    if args.tls_wrapper == "drainall":
        import streamer_bybit.transport as transport
        from bench_e2e_tls import open_drain_all_byte_stream

        transport.open_byte_stream = open_drain_all_byte_stream  # the source's TLS seam
    config = load_config_text(build_toml(args), pm, filename="bench.toml", environ={})
    pipeline = Pipeline(config, pm)
    result: dict[str, Any] = {}
    with trio.fail_after(args.timeout):
        async with trio.open_nursery() as nursery:
            t_start = time.perf_counter()
            await nursery.start(pipeline.run)
            subscribe_s = time.perf_counter() - t_start
            sink: CountingSink = pipeline.node("count")
            sources = [n for n in ("linear", "spot") if n in pipeline.nodes]
            conns = {n: len(pipeline.node(n).connections) for n in sources}
            emit_line({"event": "ready", "subscribe_s": subscribe_s, "connections": conns,
                       "rss_kib": rss_kib_self()})
            if args.progress:
                nursery.start_soon(progress, sink, args.progress)
            await sink.first_trade.wait()
            await trio.sleep(args.warmup)
            c0, t0, n0 = cpu_seconds(), time.perf_counter(), sink.trades
            k0, tk0 = sink.kline_updates, sink.tickers
            t_wall0 = time.time()
            sink.recording = True
            if args.count:
                sink.target = n0 + args.count
                await sink.reached.wait()
            else:
                await trio.sleep(args.duration)
            if args.close_boundaries:
                # keep going until K one-minute boundaries (plus waiter) are behind us
                first = (int(t_wall0 * 1000) // 60_000 + 1) * 60_000
                wait_until = first + (args.close_boundaries - 1) * 60_000 + args.waiter_ms
                left = wait_until / 1000 + 1.0 - time.time()
                if left > 0:
                    await trio.sleep(left)
            c1, t1, n1 = cpu_seconds(), time.perf_counter(), sink.trades
            sink.recording = False
            result = {
                "messages": n1 - n0,
                "cpu_s": c1 - c0,
                "wall_s": t1 - t0,
                "kline_updates": sink.kline_updates - k0,
                "tickers": sink.tickers - tk0,
                "klines_closed": sink.klines_closed,
                "deliveries": sink.deliveries,
                "subscribe_s": subscribe_s,
                "connections": conns,
                "rss_kib": rss_kib_self(),
            }
            if args.latency:
                result["latency_ms"] = percentiles(sink.latency, (50, 99, 99.9))
                result["latency_samples"] = len(sink.latency)
                result["trades_without_kline"] = sink.trades_without_kline
                deltas = [d for _, _, d in sink.close_deltas]
                result["close_delta_ms"] = percentiles(deltas, (50, 99))
                result["close_samples"] = len(deltas)
                result["close_boundaries"] = len({end for _, end, _ in sink.close_deltas})
                result["close_by_interval"] = {
                    str(iv): sum(1 for i, _, _ in sink.close_deltas if i == iv)
                    for iv in sorted({i for i, _, _ in sink.close_deltas})}
            result["metrics"] = pipeline.metrics()
            pipeline.shutdown()
    return result


def rss_kib_self() -> int:
    import os

    return rss_kib(os.getpid())


async def progress(sink: CountingSink, every: float) -> None:
    t0 = time.perf_counter()
    while True:
        await trio.sleep(every)
        emit_line({"event": "progress", "t": time.perf_counter() - t0, "rss_kib": rss_kib_self(),
                   "trades": sink.trades, "tickers": sink.tickers,
                   "kline_updates": sink.kline_updates, "klines_closed": sink.klines_closed,
                   "cpu_s": cpu_seconds()})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ws-linear", required=True)
    p.add_argument("--ws-spot", default=None)
    p.add_argument("--rest", required=True)
    p.add_argument("--ca-file", default=None)
    p.add_argument("--symbols", type=int, default=50)
    p.add_argument("--streams", default="trades")
    p.add_argument("--intervals", default="1m,5m,1h,4h,1D")
    p.add_argument("--updates", default="closed", choices=["closed", "every_trade", "throttled"])
    p.add_argument("--first-candle", default="partial", choices=["backfill", "partial", "skip"])
    p.add_argument("--waiter-ms", type=int, default=100)
    p.add_argument("--count", type=int, default=0)
    p.add_argument("--duration", type=float, default=0.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--latency", action="store_true")
    p.add_argument("--close-boundaries", type=int, default=0,
                   help="extend the run until N one-minute boundaries have closed")
    p.add_argument("--progress", type=float, default=0.0)
    p.add_argument("--tls-wrapper", choices=["trio", "drainall"], default="trio")
    p.add_argument("--cprofile", default=None, help="write a cProfile of the run here")
    p.add_argument("--timeout", type=float, default=600.0)
    args = p.parse_args()
    if bool(args.count) == bool(args.duration):
        p.error("give exactly one of --count and --duration")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.cprofile:
        import cProfile

        prof = cProfile.Profile()
        result = prof.runcall(trio.run, run_bench, args)
        prof.dump_stats(args.cprofile)
    else:
        result = trio.run(run_bench, args)
    emit_line({"event": "result", "client": "streamer", **result})


if __name__ == "__main__":
    main()
