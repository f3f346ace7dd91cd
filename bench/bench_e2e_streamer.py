"""The streamer side of the end-to-end bench: one process running a real pipeline.

    bybit.linear [+ bybit.spot] -> klines.from_trades -> bench.count
    bybit.linear (streams = ["orderbook"], --book-depth N) -> bench.count   (books)

``bench.count`` (sink) and ``bench.tap`` (transform) are registered in-process with
``PluginManager.register``. The tap counts the sources' trades inline (one trade per message,
so trades = messages) and emits nothing; the sink takes the klines. With ``--latency`` the
sink also takes the sources' batches: routing is inline (core/runtime.py), so the kline
updates of a socket read are queued before its trades, on the same task, and both reach the
sink in the same delivery; latency = arrival - the microsecond the fake built the message
(``--stamp`` appends it to every trade id). With ``--book-depth`` the source takes the
order books instead (its checks and book upkeep), the sink takes every ``Book`` event, the
tap counts them as it counts trades, and a book's latency is taken from its ``seq`` (the
fake's ``--stamp`` puts the build microsecond there).

Prints JSON lines: ``{"event":"ready", ...}`` once subscribed, ``{"event":"progress", ...}``
every ``--progress`` seconds if asked, and ``{"event":"result", ...}`` for the measured
window (``--warmup`` seconds after the first trade, then ``--count`` trades or
``--duration`` seconds).
"""

from __future__ import annotations

import argparse
import collections
import functools
import gc
import json
import logging
import os
import subprocess
import sys
import time
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import trio

from streamer._api import Context

try:
    from streamer._base_transform import BaseTransform
except ImportError:  # an install from before BaseTransform had its own module (bench_ab's old)
    from streamer._api import BaseTransform  # type: ignore[attr-defined,no-redef]
try:
    from streamer._events import Book
except ImportError:  # an install from before order books (trade rows only)
    Book = None  # type: ignore[assignment,misc]
from streamer._config import load_config_text
from streamer._events import Event, Kline, Ticker, Trade
from streamer._hookspecs import RegisterType, hookimpl
from streamer._inbox import Inbox
from streamer._metrics_http import serve_ops
from streamer._plugins import load_plugin_manager
from streamer._runtime import Pipeline
from streamer.intervals import parse_interval

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_e2e_common import Window, cpu_seconds, emit_line, percentiles, rss_kib, symbol_names

WEB_USER = "viewer"
WEB_KEY_ENV = "STREAMER_BENCH_WEB_KEY"
#: Opt-in memory diagnosis (off unless set): a file path; tracemalloc runs from the start
#: (one frame a trace: slower, and each snapshot stalls the loop a moment), and every
#: ``--progress`` tick appends RSS, the smaps_rollup totals, tracemalloc's current and peak
#: and the lines whose traced memory changed most since the last tick.
MEMDUMP_ENV = "STREAMER_BENCH_MEMDUMP"


@attrs.define
class CountConfig:
    #: Record trade -> sink latency (ms) for every trade of the measured window.
    latency: bool = False
    #: Waiter latency of the kline transform, to turn closed-kline arrival into a delta.
    waiter_ms: int = 100


class CountingSink:
    """Counts trades, tickers, kline updates and closed klines; optionally times them.

    Its inputs are the kline transform only (the light pipeline), or with ``--latency``
    also the sources, to time each trade against the kline update of the same delivery.
    """

    def __init__(self, config: CountConfig, context: Context) -> None:
        self.config = config
        self.trades = 0
        self.tickers = 0
        self.kline_updates = 0
        self.klines_closed = 0
        self.deliveries = 0
        self.recording = False
        #: ms from the trade's T (the fake's wall clock) to the delivery holding its kline.
        self.latency = array("d")
        #: (arrival wall ms, latency ms) of samples over 5 ms, to see when the tail happens
        self.outliers: list[tuple[float, float]] = []
        #: Book events received
        self.books = 0
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
                        # The fake (--stamp) ends each trade id in the microsecond it built
                        # the message: T's whole milliseconds would add 0-1 ms to a sample.
                        sent_us = e.trade_id.rpartition("@")[2]  # type: ignore[union-attr]
                        lat = now_ms - int(sent_us) / 1000.0
                        self.latency.append(lat)
                        if lat > 5.0 and len(self.outliers) < 10_000:
                            self.outliers.append((now_ms, lat))
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
                elif kind is Book:
                    self.books += 1
                    if timed and self.recording:
                        # the fake (--stamp) sends the microsecond it built the message in seq
                        lat = now_ms - e.seq / 1000.0  # type: ignore[union-attr,operator]
                        self.latency.append(lat)
                        if lat > 5.0 and len(self.outliers) < 10_000:
                            self.outliers.append((now_ms, lat))
            if trades:
                self.trades += trades
                if timed and self.recording and not updates:
                    self.trades_without_kline += 1
            self.kline_updates += updates


@attrs.define
class TapConfig:
    pass


class TapTransform(BaseTransform):
    """Counts the trades (or, with :attr:`kind` Book, the book events) and tickers of the
    sources' batches inline (no task, no wake-up) and emits nothing: how messages are
    counted without the sink seeing every trade."""

    def __init__(self, config: TapConfig, context: Context) -> None:
        self.trades = 0
        self.tickers = 0
        #: The event class counted as ``trades`` (one per message).
        self.kind: type[Event] = Trade
        #: Batches seen: the source emits one per socket read that held events, so at one
        #: trade per message this is the read cycles that carried trades.
        self.batches = 0
        self.first_trade = trio.Event()
        self.target: int | None = None
        self.reached = trio.Event()
        #: (symbol, T // 1000) -> trades, when the web bench compares what viewers received
        self.per_second: collections.Counter[tuple[str, int]] | None = None

    def process(self, batch: Sequence[Event]) -> list[Event]:
        self.batches += 1
        n = 0
        per_second = self.per_second
        kind = self.kind
        for e in batch:
            if e.__class__ is kind:
                n += 1
                if per_second is not None:
                    per_second[(e.symbol, e.ts // 1000)] += 1  # type: ignore[union-attr]
            elif e.__class__ is Ticker:
                self.tickers += 1
        if n:
            if not self.trades:
                self.first_trade.set()
            self.trades += n
            if self.target is not None and self.trades >= self.target:
                self.reached.set()
        return []


class BenchPlugin:
    @staticmethod
    @hookimpl
    def streamer_register_sinks(register: RegisterType) -> None:
        register("bench.count", CountConfig, CountingSink)

    @staticmethod
    @hookimpl
    def streamer_register_transforms(register: RegisterType) -> None:
        register("bench.tap", TapConfig, TapTransform)


def toml_list(items: list[str]) -> str:
    return json.dumps(items)


def build_toml(args: argparse.Namespace) -> str:
    symbols = symbol_names(args.symbols)
    streams = ["orderbook"] if args.book_depth else args.streams.split(",")
    intervals = args.intervals.split(",")
    sources: list[tuple[str, str, str]] = [("linear", "bybit.linear", args.ws_linear)]
    if args.ws_spot:
        sources.append(("spot", "bybit.spot", args.ws_spot))
    parts = ['[streamer]\nlog_level = "WARNING"\nstats_interval = 0\n']
    for name, kind, url in sources:
        parts.append(f'[[sources]]\nname = "{name}"\ntype = "{kind}"\n'
                     f"symbols = {toml_list(symbols)}\nstreams = {toml_list(streams)}\n"
                     f'url = "{url}"\nrest_url = "{args.rest}"\n'
                     + (f"coalesce_ms = {args.coalesce_ms}\n"
                        if args.coalesce_ms is not None else "")
                     + (f'ca_file = "{args.ca_file}"\n' if args.ca_file else "")
                     + (f"book_depth = {args.book_depth}\n" if args.book_depth else "")
                     + (f"book_stale_s = {args.book_stale_s}\n" if args.book_stale_s else ""))
    names = [s[0] for s in sources]
    if args.book_depth:
        # the books to the sink, counted inline by the tap: no klines
        parts.append(f'[[transforms]]\nname = "tap"\ntype = "bench.tap"\n'
                     f"inputs = {toml_list(names)}\n")
        parts.append(f'[[sinks]]\nname = "count"\ntype = "bench.count"\n'
                     f"inputs = {toml_list(names)}\nqueue_size = 100000\n"
                     f"latency = {'true' if args.latency else 'false'}\n")
        return "\n".join(parts)
    parts.append(f'[[transforms]]\nname = "klines"\ntype = "klines.from_trades"\n'
                 f"inputs = {toml_list(names)}\nintervals = {toml_list(intervals)}\n"
                 f'updates = "{args.updates}"\nfirst_candle = "{args.first_candle}"\n'
                 f"waiter_latency_ms = {args.waiter_ms}\n")
    parts.append(f'[[transforms]]\nname = "tap"\ntype = "bench.tap"\n'
                 f"inputs = {toml_list(names)}\n")
    if args.pipeline in ("redis", "realistic"):
        # trades and every-trade kline updates to Redis (pub/sub, default flush window) and
        # (realistic) to the websocket sink, whose clients run in their own process
        inputs = toml_list([*names, "klines"])
        parts.append(f'[[sinks]]\nname = "redis"\ntype = "redis"\ninputs = {inputs}\n'
                     f'url = "redis://127.0.0.1:{args.redis_port}/0"\n')
    if args.pipeline == "ws":
        inputs = toml_list([*names, "klines"])
    if args.pipeline in ("realistic", "ws"):
        parts.append(f'[[sinks]]\nname = "ws"\ntype = "websocket"\ninputs = {inputs}\n'
                     f'port = 0\n')
    if args.pipeline == "web":
        # what `web = true` serves: the sources' trades and tickers and throttled klines,
        # behind a login, to the page's viewers (their own process)
        parts.append(f'[[sinks]]\nname = "ws"\ntype = "websocket"\n'
                     f"inputs = {toml_list([*names, 'klines'])}\nport = 0\nweb = true\n"
                     f'auth_user = "{WEB_USER}"\nauth_key_env = "{WEB_KEY_ENV}"\n'
                     + (f"batch_interval = {args.batch_interval}\n"
                        if args.batch_interval is not None else ""))
    sink_inputs = [*names, "klines"] if args.latency else ["klines"]
    parts.append(f'[[sinks]]\nname = "count"\ntype = "bench.count"\n'
                 f"inputs = {toml_list(sink_inputs)}\nqueue_size = 100000\n"
                 f"latency = {'true' if args.latency else 'false'}\n"
                 f"waiter_ms = {args.waiter_ms}\n")
    return "\n".join(parts)


async def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    pm = load_plugin_manager(environ={})
    pm.register(BenchPlugin(), "bench")
    # only the web view's key (the sink checks it at load and reads it at start)
    environ = {k: v for k, v in os.environ.items() if k == WEB_KEY_ENV}
    config = load_config_text(build_toml(args), pm, filename="bench.toml", environ=environ)
    pipeline = Pipeline(config, pm)
    result: dict[str, Any] = {}
    with trio.fail_after(args.timeout):
        async with trio.open_nursery() as nursery:
            t_start = time.perf_counter()
            await nursery.start(pipeline.run)
            subscribe_s = time.perf_counter() - t_start
            scraper = Scraper()
            ops_scope = trio.CancelScope()

            async def serve_and_scrape(*, task_status: trio.TaskStatus[None]) -> None:
                with ops_scope:
                    async with trio.open_nursery() as ops_nursery:
                        ops = await ops_nursery.start(
                            functools.partial(serve_ops, pipeline, "127.0.0.1:0"))
                        ops.pipeline_started = True
                        ops_nursery.start_soon(scraper.run, ops.port, args.metrics)
                        task_status.started()

            if args.metrics:
                await nursery.start(serve_and_scrape)
            sink: CountingSink = pipeline.node("count")
            tap: TapTransform = pipeline.node("tap")
            if args.book_depth:
                tap.kind = Book
            sources = [n for n in ("linear", "spot") if n in pipeline.nodes]
            conns = {n: len(pipeline.node(n).connections) for n in sources}
            clients = None
            if args.pipeline in ("realistic", "ws"):
                clients = await start_ws_clients(pipeline.node("ws"), args.ws_clients)
            if args.pipeline == "web":
                tap.per_second = collections.Counter()
                if args.viewers:
                    clients = await start_web_viewers(pipeline.node("ws"), args.viewers,
                                                      args.stalled)
            emit_line({"event": "ready", "subscribe_s": subscribe_s, "connections": conns,
                       "rss_kib": rss_kib_self()})
            progress_scope = trio.CancelScope()
            if args.progress:
                nursery.start_soon(progress, sink, tap, args.progress, progress_scope)
            await tap.first_trade.wait()
            await trio.sleep(args.warmup)
            window, n0, b0 = Window(args.server_pid), tap.trades, tap.batches
            window.start()
            k0, tk0, d0 = sink.kline_updates, tap.tickers, sink.deliveries
            ws0 = pipeline.metrics().get("ws", {}) if args.pipeline == "web" else {}
            t_wall0 = time.time()
            sink.recording = True
            gc_pauses = GcPauses()
            if args.count:
                tap.target = n0 + args.count
                await tap.reached.wait()
            else:
                await trio.sleep(args.duration)
            if args.close_boundaries:
                # keep going until K boundaries of the shortest interval (plus waiter) are
                # behind us
                step = min(parse_interval(i) for i in args.intervals.split(","))
                first = (int(t_wall0 * 1000) // step + 1) * step
                wait_until = first + (args.close_boundaries - 1) * step + args.waiter_ms
                left = wait_until / 1000 + 1.0 - time.time()
                if left > 0:
                    await trio.sleep(left)
            measured, n1 = window.stop(), tap.trades
            sink.recording = False
            result = {
                "messages": n1 - n0,
                **measured,
                "reads": tap.batches - b0,
                "kline_updates": sink.kline_updates - k0,
                "tickers": tap.tickers - tk0,
                "klines_closed": sink.klines_closed,
                "sink_deliveries": sink.deliveries - d0,
                "subscribe_s": subscribe_s,
                "connections": conns,
                "rss_kib": rss_kib_self(),
            }
            if args.book_depth:
                result["books_at_sink"] = sink.books
            if args.latency:
                result["latency_ms"] = percentiles(sink.latency, (50, 99, 99.9))
                result["latency_samples"] = len(sink.latency)
                result["trades_without_kline"] = sink.trades_without_kline
                result["outliers_over_5ms"] = outlier_bursts(sink.outliers)
                deltas = [d for _, _, d in sink.close_deltas]
                result["close_delta_ms"] = percentiles(deltas, (50, 99))
                result["close_samples"] = len(deltas)
                result["close_boundaries"] = len({end for _, end, _ in sink.close_deltas})
                per_boundary: dict[int, list[float]] = {}
                for _, end, d in sink.close_deltas:
                    per_boundary.setdefault(end, []).append(d)
                result["close_per_boundary"] = [
                    {"end": end, "klines": len(ds), "min_ms": min(ds), "max_ms": max(ds)}
                    for end, ds in sorted(per_boundary.items())]
                result["close_by_interval"] = {
                    str(iv): sum(1 for i, _, _ in sink.close_deltas if i == iv)
                    for iv in sorted({i for i, _, _ in sink.close_deltas})}
            if args.metrics:
                result["scrapes"] = scraper.count
                result["scrape_bytes"] = scraper.last_size
            result["gc"] = gc_pauses.summary()
            result["metrics"] = pipeline.metrics()
            if args.pipeline == "web":
                result["viewers"] = web_viewers_report(clients, tap, int(t_wall0 * 1000),
                                                       int(time.time() * 1000))
                # the sink's own counters, its inbox's drops and losses
                result["ws_metrics"] = pipeline.metrics()["ws"]
                # what it sent over the window: messages, and writes to batched clients
                result["ws_window"] = {k: result["ws_metrics"].get(k, 0) - ws0.get(k, 0)
                                       for k in ("sent_messages", "batched_writes",
                                                 "batched_bytes")}
            if clients is not None:
                result["ws_clients"] = len(pipeline.node("ws").clients)
                clients.kill()
                clients.wait()
            progress_scope.cancel()
            ops_scope.cancel()
            pipeline.shutdown()
    return result


class Scraper:
    """GETs /metrics every ``every`` seconds, as Prometheus would (it usually waits 15 s)."""

    def __init__(self) -> None:
        self.count = 0
        self.last_size = 0

    async def run(self, port: int, every: float) -> None:
        while True:
            await trio.sleep(every)
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                await stream.send_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n")
                size = 0
                while chunk := await stream.receive_some(65536):
                    size += len(chunk)
            if size:
                self.count += 1
                self.last_size = size


async def start_ws_clients(sink: Any, n: int) -> subprocess.Popen[bytes]:
    """The websocket sink's clients, in their own process; returns once all are served."""
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve().parent / "bench_e2e_wsclients.py"),
         "--url", sink.url, "--clients", str(n)],
        stdout=subprocess.PIPE)
    assert proc.stdout is not None
    line = await trio.to_thread.run_sync(proc.stdout.readline)
    if b'"ready"' not in line:
        proc.kill()
        raise RuntimeError(f"websocket clients did not start: {line!r}")
    await sink.wait_for_clients(n)
    return proc


async def start_web_viewers(sink: Any, n: int, stalled: int) -> subprocess.Popen[bytes]:
    """``n`` browser-like viewers (bench_web_viewer_clients.py, their own process), the
    last ``stalled`` of them never reading once subscribed; returns once all are served."""
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve().parent / "bench_web_viewer_clients.py"),
         "--url", sink.url, "--user", WEB_USER, "--key", os.environ[WEB_KEY_ENV],
         "--viewers", str(n), "--stalled", str(stalled)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    line = await trio.to_thread.run_sync(proc.stdout.readline)
    if b'"ready"' not in line or json.loads(line)["closed"]:
        proc.kill()
        raise RuntimeError(f"web viewers did not start: {line!r}")
    with trio.fail_after(30):
        await sink.wait_for_clients(n)
    return proc


def web_viewers_report(proc: subprocess.Popen[bytes] | None, tap: TapTransform,
                       start_ms: int, end_ms: int) -> dict[str, Any]:
    """What each viewer received over whole seconds of the window, against the trades the
    source emitted for its symbol over the same seconds (the tap's count)."""
    if proc is None:
        return {}
    assert proc.stdin is not None and proc.stdout is not None and tap.per_second is not None
    # Whole seconds strictly inside the window, and 2 s of slack at its end for delivery.
    first, last = start_ms // 1000 + 1, end_ms // 1000 - 2
    proc.stdin.write(f"report {first * 1000} {last * 1000}\n".encode())
    proc.stdin.flush()
    viewers = json.loads(proc.stdout.readline())["viewers"]
    sent: dict[str, int] = {}
    for (symbol, second), count in tap.per_second.items():
        if first <= second < last:
            sent[symbol] = sent.get(symbol, 0) + count
    reading = [v for v in viewers if not v["stalled"]]
    stalled = [v for v in viewers if v["stalled"]]
    complete = sum(1 for v in reading
                   if not v["closed"] and v["trades"] == sent.get(v["symbol"], -1))
    return {"seconds": last - first, "reading": len(reading), "stalled": len(stalled),
            "reading_complete": complete,
            "reading_closed": sum(1 for v in reading if v["closed"]),
            "symbols": sorted({v["symbol"] for v in reading}),
            "trades_per_reading_viewer": sorted({v["trades"] for v in reading}),
            "trades_sent_per_symbol": {s: sent.get(s, 0)
                                       for s in sorted({v["symbol"] for v in reading})}}


class GcPauses:
    """Times the collector's pauses (a cause of tail latency), via ``gc.callbacks``."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []
        self._t = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t = time.perf_counter()
        else:
            self.pauses.append((info["generation"], (time.perf_counter() - self._t) * 1000))

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for gen in (0, 1, 2):
            ms = [p for g, p in self.pauses if g == gen]
            if ms:
                out[f"gen{gen}"] = {"count": len(ms), "max_ms": max(ms), "total_ms": sum(ms)}
        return out


def outlier_bursts(outliers: list[tuple[float, float]]) -> list[dict[str, Any]]:
    """Group samples over 5 ms into bursts (gaps < 50 ms): when, how long, how bad."""
    bursts: list[dict[str, Any]] = []
    for at, lat in outliers:
        if bursts and at - bursts[-1]["last"] < 50:
            b = bursts[-1]
            b["last"] = at
            b["samples"] += 1
            b["max_ms"] = max(b["max_ms"], lat)
        else:
            bursts.append({"first": at, "last": at, "samples": 1, "max_ms": lat})
    for b in bursts:
        b["ms_after_minute"] = b["first"] % 60_000
        b["span_ms"] = b["last"] - b["first"]
        b["at"] = time.strftime("%H:%M:%S", time.localtime(b["first"] / 1000))
        del b["first"], b["last"]
    return bursts


def rss_kib_self() -> int:
    import os

    return rss_kib(os.getpid())


class MemDump:
    """The ``STREAMER_BENCH_MEMDUMP`` diagnosis (see :data:`MEMDUMP_ENV`)."""

    def __init__(self, path: str) -> None:
        import tracemalloc

        self.path = Path(path)
        self.tracemalloc = tracemalloc
        if not tracemalloc.is_tracing():
            tracemalloc.start(1)
        self.last: Any = None

    def tick(self, t: float) -> None:
        tm = self.tracemalloc
        snap = tm.take_snapshot().filter_traces([tm.Filter(False, tm.__file__)])
        current, peak = tm.get_traced_memory()
        rollup = {}
        try:
            for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]:
                key, _, value = line.partition(":")
                if key in ("Rss", "Anonymous", "Private_Dirty"):
                    rollup[key] = value.strip()
        except OSError:
            pass
        lines = [f"t {t:.0f} s: rss {rss_kib_self() / 1024:.1f} MB; smaps_rollup {rollup}; "
                 f"tracemalloc current {current / 2**20:.1f} MB, peak {peak / 2**20:.1f} MB; "
                 f"gc counts {gc.get_count()}"]
        if self.last is not None:
            for stat in snap.compare_to(self.last, "lineno")[:8]:
                lines.append(f"    {stat}")
        self.last = snap
        with self.path.open("a") as f:
            f.write("\n".join(lines) + "\n")


async def progress(sink: CountingSink, tap: TapTransform, every: float,
                   scope: trio.CancelScope) -> None:
    t0 = time.perf_counter()
    memdump = MemDump(os.environ[MEMDUMP_ENV]) if os.environ.get(MEMDUMP_ENV) else None
    if memdump is not None:
        memdump.tick(0.0)
    with scope:
        while True:
            await trio.sleep(every)
            if memdump is not None:
                memdump.tick(time.perf_counter() - t0)
            emit_line({"event": "progress", "t": time.perf_counter() - t0,
                       "rss_kib": rss_kib_self(), "trades": tap.trades,
                       "tickers": tap.tickers, "kline_updates": sink.kline_updates,
                       "klines_closed": sink.klines_closed, "cpu_s": cpu_seconds()})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ws-linear", required=True)
    p.add_argument("--ws-spot", default=None)
    p.add_argument("--rest", required=True)
    p.add_argument("--ca-file", default=None)
    p.add_argument("--symbols", type=int, default=50)
    p.add_argument("--streams", default="trades")
    p.add_argument("--book-depth", type=int, default=0,
                   help="the order books at this depth instead of --streams: source -> sink, "
                        "no klines (0: trades)")
    p.add_argument("--book-stale-s", type=float, default=0.0,
                   help="the source's book_stale_s (0: its default, 3 push intervals)")
    p.add_argument("--intervals", default="1m,5m,1h,4h,1D")
    p.add_argument("--updates", default="closed", choices=["closed", "every_trade", "throttled"])
    p.add_argument("--first-candle", default="partial", choices=["backfill", "partial", "skip"])
    p.add_argument("--waiter-ms", type=int, default=100)
    p.add_argument("--count", type=int, default=0)
    p.add_argument("--duration", type=float, default=0.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--latency", action="store_true")
    p.add_argument("--close-boundaries", type=int, default=0,
                   help="extend the run until N boundaries of the shortest interval have "
                        "closed")
    p.add_argument("--progress", type=float, default=0.0)
    p.add_argument("--metrics", type=float, default=0.0,
                   help="serve /metrics and scrape it every N seconds (0: no metrics)")
    p.add_argument("--coalesce-ms", type=float, default=None,
                   help="the sources' coalesce_ms (default: the source's own default)")
    p.add_argument("--pipeline", choices=["light", "redis", "realistic", "ws", "web"],
                   default="light",
                   help="light: closed klines to a counting sink; redis: trades and "
                        "every-trade klines to redis; realistic: the same to redis and to "
                        "the websocket sink; ws: the same to the websocket sink only; web: "
                        "trades, tickers and throttled klines to the websocket sink serving "
                        "the web view, read by --viewers")
    p.add_argument("--redis-port", type=int, default=0)
    p.add_argument("--server-pid", type=int, default=0,
                   help="also measure this server's CPU (redis-server) over the window")
    p.add_argument("--ws-clients", type=int, default=10)
    p.add_argument("--viewers", type=int, default=0,
                   help="web: browser-like viewers (bench_web_viewer_clients.py)")
    p.add_argument("--batch-interval", type=float, default=None,
                   help="web: the sink's batch_interval (default: the sink's default)")
    p.add_argument("--stalled", type=int, default=0,
                   help="web: of the viewers, this many stop reading once subscribed")
    p.add_argument("--cprofile", default=None, help="write a cProfile of the run here")
    p.add_argument("--timeout", type=float, default=600.0)
    args = p.parse_args()
    if bool(args.count) == bool(args.duration):
        p.error("give exactly one of --count and --duration")
    if args.pipeline in ("redis", "realistic"):
        if not args.redis_port:
            p.error(f"--pipeline {args.pipeline} needs --redis-port")
        args.updates = "every_trade"
    if args.pipeline == "ws":
        args.updates = "every_trade"
    if args.pipeline == "web":
        args.updates = "throttled"
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if os.environ.get(MEMDUMP_ENV):
        import tracemalloc

        tracemalloc.start(1)  # from the start, so the books' first snapshots are traced
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
