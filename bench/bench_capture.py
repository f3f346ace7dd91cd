"""Capture, replay and files-sink figures (docs/recording.md).

    .venv/bin/python bench/bench_capture.py                 # ~1-2 min
    .venv/bin/python bench/bench_capture.py --count 100000 --repeat 1

1. Capture cost: the fake Bybit flat out in its own process (50 symbols, one trade per
   message); a client process runs bybit.linear -> klines.from_trades -> a counting sink,
   without and with ``capture_dir`` (interleaved, ``--repeat`` times), and reports its own
   CPU seconds (all threads, so the capture writer thread counts) per 100k messages over a
   window of ``--count`` messages after a warm-up.
2. Replay flat out: the capture of the last run replayed with ``speed = "max"`` into the same
   pipeline: messages/s (wall) and CPU per 100k.
3. Files sink: ``--events`` trades pushed by a scripted source into ``files`` (jsonl, then
   parquet): events/s from the first push to the last file renamed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import trio
from bench_e2e_common import PYTHON, Children, cpu_seconds, emit_line, start_fake, symbol_names

from streamer import Context, Inbox, hookimpl
from streamer._config import load_config_text
from streamer._events import Trade
from streamer._hookspecs import RegisterType
from streamer._plugins import load_plugin_manager
from streamer._runtime import Pipeline
from streamer.testing import TestingPlugin


@attrs.define
class CountConfig:
    pass


class CountSink:
    """Counts trades; sets ``reached`` when ``target`` is passed."""

    def __init__(self, config: CountConfig, context: Context) -> None:
        self.trades = 0
        self.target = 0
        self.first = trio.Event()
        self.reached = trio.Event()

    async def run(self, inbox: Inbox, *, task_status: trio.TaskStatus[None] =
                  trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while events := await inbox.get():
            self.trades += sum(1 for e in events if e.__class__ is Trade)
            self.first.set()
            if self.target and self.trades >= self.target:
                self.reached.set()


class BenchPlugin:
    @staticmethod
    @hookimpl
    def streamer_register_sinks(register: RegisterType) -> None:
        register("bench.count", CountConfig, CountSink)


def plugin_manager() -> Any:
    pm = load_plugin_manager(environ={})
    pm.register(BenchPlugin(), "bench")
    pm.register(TestingPlugin(), "testing")
    return pm


PIPE = """
[streamer]
log_level = "WARNING"
stats_interval = 0

[[transforms]]
name = "klines"
type = "klines.from_trades"
inputs = ["src"]
intervals = ["1m", "5m", "1h"]
first_candle = "partial"

[[sinks]]
name = "count"
type = "bench.count"
inputs = ["src", "klines"]
queue_size = 100000
"""


# -- 1. the live client (a child process) ----------------------------------------------


async def live_client(args: argparse.Namespace) -> dict[str, Any]:
    capture = f'capture_dir = "{args.capture}"\n' if args.capture else ""
    toml = (f'[[sources]]\nname = "src"\ntype = "bybit.linear"\n'
            f"symbols = {json.dumps(symbol_names(args.symbols))}\n"
            f'streams = ["trades"]\nurl = "{args.ws}"\nrest_url = "{args.rest}"\n'
            f"recover_gaps = false\n{capture}" + PIPE)
    pm = plugin_manager()
    pipeline = Pipeline(load_config_text(toml, pm, filename="bench.toml", environ={}), pm)
    async with trio.open_nursery() as nursery:
        await nursery.start(pipeline.run)
        sink: CountSink = pipeline.node("count")
        await sink.first.wait()
        await trio.sleep(args.warmup)
        c0, t0, n0 = cpu_seconds(), time.perf_counter(), sink.trades
        sink.target = n0 + args.count
        await sink.reached.wait()
        c1, t1, n1 = cpu_seconds(), time.perf_counter(), sink.trades
        taps = [c.capture for c in pipeline.node("src").connections if c.capture is not None]
        writer = taps[0].writer if taps else None
        pipeline.shutdown()
    metrics = pipeline.metrics()["src"]
    return {"messages": n1 - n0, "cpu_s": c1 - c0, "wall_s": t1 - t0,
            "capture_dropped_reads": metrics.get("capture_dropped_reads", 0),
            "reads_captured": writer.reads_written if writer else 0,
            "frames_captured": writer.frames_written if writer else 0,
            "writer_thread_cpu_s": writer.thread_cpu_s if writer else 0.0}


# -- 2. replay ------------------------------------------------------------------------


def replay(path: Path) -> dict[str, Any]:
    toml = f'[[sources]]\nname = "src"\ntype = "bybit.replay"\npath = "{path}"\nspeed = "max"\n'
    pm = plugin_manager()
    pipeline = Pipeline(load_config_text(toml + PIPE, pm, filename="r.toml", environ={}), pm)

    async def main() -> None:
        await pipeline.run()

    c0, t0 = cpu_seconds(), time.perf_counter()
    trio.run(main, clock=pipeline.trio_clock())
    c1, t1 = cpu_seconds(), time.perf_counter()
    frames = pipeline.metrics()["src"].get("replayed_frames", 0)
    trades = pipeline.node("count").trades
    return {"frames": frames, "trades": trades, "wall_s": t1 - t0, "cpu_s": c1 - c0,
            "frames_per_s": frames / (t1 - t0)}


# -- 3. files sink --------------------------------------------------------------------


def files_sink(fmt: str, n: int, directory: Path) -> dict[str, Any]:
    toml = (f'[[sources]]\nname = "in"\ntype = "testing.scripted"\n'
            f'[[sinks]]\nname = "files"\ntype = "files"\ndir = "{directory}"\n'
            f'format = "{fmt}"\nqueue_size = 100000\n')
    pm = plugin_manager()
    pipeline = Pipeline(load_config_text(toml, pm, filename="f.toml", environ={}), pm)
    t_base = 1_764_115_200_000
    batches = [[Trade("linear", f"S{j % 50}", t_base + i * 100 + j, "Buy", "65000.5", "0.001",
                      f"{i}-{j}", "PlusTick", False, False, i) for j in range(100)]
               for i in range(n // 100)]

    async def main() -> float:
        async with trio.open_nursery() as nursery:
            await nursery.start(pipeline.run)
            source = pipeline.node("in")
            t0 = time.perf_counter()
            for b in batches:
                source.push(b)
            source.finish()
        return t0

    c0 = cpu_seconds()
    t0 = trio.run(main)
    t1, c1 = time.perf_counter(), cpu_seconds()
    counts = pipeline.metrics()["files"]
    return {"format": fmt, "events": counts.get("written_events", 0), "wall_s": t1 - t0,
            "events_per_s": counts.get("written_events", 0) / (t1 - t0),
            "cpu_s_per_100k": (c1 - c0) / n * 100_000, "files": counts.get("files_written", 0),
            "bytes": sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())}


# -- driver ---------------------------------------------------------------------------


def per_100k(run: dict[str, Any]) -> float:
    return run["cpu_s"] / run["messages"] * 100_000


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--ws", default="")
    p.add_argument("--rest", default="")
    p.add_argument("--capture", default="")
    p.add_argument("--symbols", type=int, default=50)
    p.add_argument("--count", type=int, default=200_000)
    p.add_argument("--warmup", type=float, default=1.5)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--events", type=int, default=200_000)
    args = p.parse_args(argv)
    if args.child:
        emit_line({"event": "result", **trio.run(live_client, args)})
        return

    work = Path(tempfile.mkdtemp(prefix="bench_capture_"))
    children = Children()
    out: dict[str, Any] = {"count": args.count, "symbols": args.symbols}
    try:
        fake, info = start_fake(children, symbols=args.symbols, rate=0, duration=600)
        runs: dict[str, list[dict[str, Any]]] = {"without": [], "with": []}
        capture_dir = work / "capture"
        for _ in range(args.repeat):
            for mode in ("without", "with"):
                if mode == "with":
                    shutil.rmtree(capture_dir, ignore_errors=True)
                argv = [PYTHON, str(Path(__file__)), "--child", "--ws", info["ws_linear"],
                        "--rest", info["rest"], "--symbols", str(args.symbols),
                        "--count", str(args.count), "--warmup", str(args.warmup)]
                if mode == "with":
                    argv += ["--capture", str(capture_dir)]
                child = children.start(argv, name=f"client-{mode}")
                result = child.read_json(timeout=300, want="result")
                children.stop(child)
                runs[mode].append(result)
                print(f"{mode:>7} capture: {result['messages']} msgs, "
                      f"{per_100k(result):.3f} CPU-s/100k, "
                      f"{result['messages'] / result['wall_s']:,.0f} msg/s"
                      + (f", writer thread {result['writer_thread_cpu_s']:.3f} s for "
                         f"{result['frames_captured']} frames" if mode == "with" else ""),
                      file=sys.stderr)
        children.stop(fake)
        without = statistics.median(per_100k(r) for r in runs["without"])
        with_ = statistics.median(per_100k(r) for r in runs["with"])
        # The writer thread's own CPU per frame it wrote: the part of the cost that does not
        # drown in the noise of a shared machine (the socket task's part is a few C calls
        # per read).
        writer = statistics.median(r["writer_thread_cpu_s"] / r["frames_captured"] * 100_000
                                   for r in runs["with"])
        out["capture"] = {"cpu_s_per_100k_without": without, "cpu_s_per_100k_with": with_,
                          "overhead_pct": (with_ / without - 1) * 100,
                          "writer_thread_cpu_s_per_100k": writer,
                          "writer_thread_pct_of_without": writer / without * 100,
                          "capture_bytes": sum(f.stat().st_size
                                               for f in capture_dir.rglob("*") if f.is_file()),
                          "runs": runs}
        out["replay"] = replay(capture_dir)
        print(f"replay: {out['replay']['frames_per_s']:,.0f} frames/s", file=sys.stderr)
        out["files"] = [files_sink(fmt, args.events, work / fmt) for fmt in ("jsonl", "parquet")]
        for f in out["files"]:
            print(f"files {f['format']}: {f['events_per_s']:,.0f} events/s", file=sys.stderr)
    finally:
        children.stop_all()
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
