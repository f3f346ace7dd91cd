"""The ``nats`` sink: events/s into JetStream, CPU per 100k events, trade -> consumer latency.

Starts its own nats-server processes on free loopback ports (tests/nats_server.py): one
JetStream server, and a 3-node cluster with an R3 stream.

- ``hop``: cost of one trio -> asyncio-thread call (:class:`streamer_nats.bridge.AsyncioThread`)
  against ``trio.to_thread.run_sync``, with a no-op: why the sink hands over whole chunks.
- ``throughput``: the sink alone, flat out: N trades pushed into its inbox in batches of 100
  (one socket read's worth), timed until every one is acknowledged by JetStream; CPU is the
  whole process (trio thread + asyncio thread), ``time.process_time``, and beside it the
  nats-server processes' CPU over the same window (/proc), and the sum.
- ``latency``: the real thing at 2,000 trades/s: ``python -m streamer_bybit.simulator`` ->
  ``streamer run`` (bybit.linear -> nats sink) -> a nats-py consumer in this process;
  latency = arrival time at the consumer - the trade's time ``T`` (set by the fake from its
  wall clock when it made the trade; ms resolution). ``stored_*``: the same up to the
  leader's storage timestamp (message metadata), which splits publish from delivery.

    .venv/bin/python bench/bench_nats.py [--quick] [--only hop,throughput,latency]

Writes ``bench/results/<UTC date>-<HHMM>-nats.md`` (commit, machine, load before / after,
every setting; ``--summary ''`` skips it) and prints the raw results as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

from nats_server import NatsCluster, NatsServer, nats_server_binary, stream_info

sys.path.insert(0, os.path.dirname(__file__))
from bench_e2e_common import ROOT, proc_cpu_seconds
from bench_pipeline import machine_info

from streamer import Context, Inbox, Trade
from streamer._metrics import Metrics
from streamer_nats.bridge import AsyncioThread
from streamer_nats.sink import NatsSink, NatsSinkConfig

SYMBOLS = [f"SYM{i:02d}USDT" for i in range(50)]


def trades(n: int) -> list[Trade]:
    return [Trade("linear", SYMBOLS[i % 50], 1_700_000_000_000 + i, "Buy", "65000.5", "0.001",
                  f"{i:012d}", "PlusTick", False, False, i) for i in range(n)]


def context() -> Context:
    return Context(name="bench", type="nats", logger=logging.getLogger("bench"),
                   metrics=Metrics())


# -- hop ------------------------------------------------------------------------------------

async def bench_hop(n: int) -> dict[str, float]:
    async def noop() -> None:
        return None

    thread = AsyncioThread()
    async with trio.open_nursery() as nursery:
        await nursery.start(thread.serve)
        for _ in range(200):
            await thread.call(noop)
        t = time.perf_counter()
        for _ in range(n):
            await thread.call(noop)
        asyncio_us = (time.perf_counter() - t) / n * 1e6
        t = time.perf_counter()
        for _ in range(n):
            await trio.to_thread.run_sync(lambda: None)
        to_thread_us = (time.perf_counter() - t) / n * 1e6
        nursery.cancel_scope.cancel()
    return {"asyncio_thread_call_us": round(asyncio_us, 1),
            "trio_to_thread_us": round(to_thread_us, 1)}


# -- throughput -----------------------------------------------------------------------------

def servers_cpu(pids: list[int]) -> float:
    """utime + stime of the nats-server processes (they are this bench's children)."""
    return sum(proc_cpu_seconds(pid) for pid in pids)


async def bench_throughput(urls: list[str], replicas: int, n: int,
                           server_pids: list[int]) -> dict[str, float]:
    events = trades(n)
    config = NatsSinkConfig(url=urls, replicas=replicas, stream=f"BENCH{replicas}",
                            subject_prefix=f"bench{replicas}", max_buffer=n + 1)
    ctx = context()
    sink = NatsSink(config, ctx)
    inbox = Inbox("bench", 1000, "block")
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.run, inbox)
        # warm-up: the stream exists, the connection is hot
        await inbox.put(trades(1000))
        while ctx.metrics["published"] < 1000:
            await trio.sleep(0.01)
        base = ctx.metrics["published"] + ctx.metrics["duplicates"]
        cpu, wall = time.process_time(), time.perf_counter()
        server_cpu = servers_cpu(server_pids)
        for i in range(0, n, 100):
            await inbox.put(events[i:i + 100])
            await trio.lowlevel.checkpoint()
        while ctx.metrics["published"] + ctx.metrics["duplicates"] - base < n:
            await trio.sleep(0.001)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        server_cpu = servers_cpu(server_pids) - server_cpu
        inbox.close()
    m = ctx.metrics.snapshot()
    state = (await trio.to_thread.run_sync(stream_info, urls, config.stream)).state
    return {"events": n, "events_per_s": round(n / wall), "cpu_s_per_100k": round(
        cpu / n * 100_000, 2),
        # the nats-server processes over the same window: what the sink's publishing
        # costs the machine, not only this process
        "server_cpu_s_per_100k": round(server_cpu / n * 100_000, 2),
        "cpu_with_servers_s_per_100k": round((cpu + server_cpu) / n * 100_000, 2),
        "wall_s": round(wall, 2), "retried": m.get("retried", 0),
        "failed": m.get("failed", 0),
        "stored_bytes_per_message": round(state.bytes / max(1, state.messages))}


# -- latency --------------------------------------------------------------------------------

LATENCY_TOML = """
[streamer]
log_level = "WARNING"

[[sources]]
name = "linear"
type = "bybit.linear"
symbols = {symbols}
streams = ["trades"]
url = "{ws}"
rest_url = "{rest}"

[[sinks]]
name = "nats"
type = "nats"
inputs = ["linear"]
url = {urls}
replicas = {replicas}
stream = "LAT{replicas}"
subject_prefix = "lat{replicas}"
"""


async def _consume(urls: list[str], subject: str, stream: str, seconds: float,
                   ready: Any) -> list[float]:
    import nats

    nc = await nats.connect(servers=urls)
    js = nc.jetstream()
    lat: list[float] = []
    stored: list[float] = []

    async def on_msg(msg: Any) -> None:
        now = time.time() * 1000.0
        env = json.loads(msg.data)
        at = msg.metadata.timestamp.timestamp() * 1000.0  # when the leader stored it
        for t in env["data"]:
            lat.append(now - t["T"])
            stored.append(at - t["T"])

    while True:
        try:
            await js.stream_info(stream)
            break
        except Exception:
            await asyncio.sleep(0.1)
    sub = await js.subscribe(subject, stream=stream, cb=on_msg, ordered_consumer=True,
                             deliver_policy=nats.js.api.DeliverPolicy.NEW)
    ready()
    await asyncio.sleep(seconds)
    await sub.unsubscribe()
    await nc.close()
    return [lat, stored]


def bench_latency(urls: list[str], replicas: int, rate: int, seconds: float
                  ) -> dict[str, float]:
    from faults.procs import fake_bybit_process, start_streamer

    n_symbols = 10
    from streamer_bybit.simulator.__main__ import symbols as fake_symbols
    syms = fake_symbols(n_symbols)
    with tempfile.TemporaryDirectory() as tmp, fake_bybit_process(
            "--symbols", str(n_symbols), "--rate", str(rate), "--no-tickers") as fake:
        config = Path(tmp) / "s.toml"
        config.write_text(LATENCY_TOML.format(
            symbols=json.dumps(syms), ws=fake["ws_linear"], rest=fake["rest"],
            urls=json.dumps(urls), replicas=replicas))
        proc = start_streamer(config, Path(tmp) / "s.log")
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    stream_info(urls, f"LAT{replicas}")
                    break
                except Exception:
                    time.sleep(0.2)
            time.sleep(1.0)  # warm-up
            lat, stored = asyncio.run(_consume(urls, f"lat{replicas}.linear.trades.>",
                                               f"LAT{replicas}", seconds, lambda: None))
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
    lat.sort()
    if len(lat) < 10:
        return {"samples": len(lat)}
    q = statistics.quantiles(lat, n=1000)
    qs = statistics.quantiles(stored, n=1000)
    return {"samples": len(lat), "rate_per_s": round(len(lat) / seconds),
            "p50_ms": round(q[499], 1), "p99_ms": round(q[989], 1),
            "p999_ms": round(q[998], 1), "max_ms": round(lat[-1], 1),
            "stored_p50_ms": round(qs[499], 1), "stored_p99_ms": round(qs[989], 1)}


def _cell(r: dict[str, Any] | None, *keys: str, unit: str = "") -> str:
    if not r or any(k not in r for k in keys):
        return "not run"
    return " / ".join(f"{r[k]:,}" if isinstance(r[k], int) else f"{r[k]}" for k in keys) + unit


def write_summary(args: argparse.Namespace, results: dict[str, Any], started: float,
                  n: int, seconds: float) -> Path:
    """The Markdown summary of this run, to commit: every figure the docs cite from it."""
    machine = results["machine"]
    git = machine["git"]
    stamp = time.strftime("%Y-%m-%d-%H%M", time.gmtime(started))
    out = Path(args.summary) if args.summary else ROOT / "bench" / "results" / f"{stamp}-nats.md"
    load0 = tuple(round(x, 2) for x in results["loadavg_start"])
    load1 = tuple(round(x, 2) for x in results["loadavg_end"])
    s, r3 = results.get("throughput_single"), results.get("throughput_r3")
    ls, lr3 = results.get("latency_single"), results.get("latency_r3")
    hop = results.get("hop") or {}
    lines = [
        f"# bench_nats.py ({time.strftime('%Y-%m-%d %H:%M', time.gmtime(started))} UTC)", "",
        "Written by `bench/bench_nats.py` (never edited by hand).", "",
        f"Command: `python bench/bench_nats.py {' '.join(sys.argv[1:])}`".rstrip(), "",
        f"Commit: {git['commit'][:7]} ({git['subject']})"
        f"{', dirty tree' if git['dirty'] else ''}.", "",
        f"Machine: {machine['cpu_model']}, {machine['nproc']} cores, Python "
        f"{machine['python']}, {machine['platform']}; {_nats_version()}. Load average "
        f"(1, 5, 15 min) before {load0}, after {load1} (the machine is shared).", "",
        f"Settings: throughput: {n:,} trades pushed into the sink's inbox in chunks of 100, "
        "flat out, until JetStream acknowledged each; CPU of this process (the trio thread "
        "and the sink's asyncio thread) and, beside it, the nats-server processes' CPU over "
        "the same window. Latency: the simulator at 2,000 trades/s over 10 symbols -> "
        f"`streamer run` (bybit.linear -> nats) -> a nats-py consumer, {seconds:g} s. Single: "
        "one JetStream server; R3: a 3-node cluster (the same 2 cores) and a stream of 3 "
        "replicas.", "",
        "| what | single server | R3 cluster |", "|---|---|---|",
        f"| events/s published, flat out | {_cell(s, 'events_per_s')} | "
        f"{_cell(r3, 'events_per_s')} |",
        f"| CPU-s per 100k events: the sink's process | {_cell(s, 'cpu_s_per_100k')} | "
        f"{_cell(r3, 'cpu_s_per_100k')} |",
        f"| CPU-s per 100k events: nats-server(s) | {_cell(s, 'server_cpu_s_per_100k')} | "
        f"{_cell(r3, 'server_cpu_s_per_100k')} |",
        f"| CPU-s per 100k events: both | {_cell(s, 'cpu_with_servers_s_per_100k')} | "
        f"{_cell(r3, 'cpu_with_servers_s_per_100k')} |",
        f"| trade -> consumer at 2,000/s, p50 / p99 / p99.9 / max, ms | "
        f"{_cell(ls, 'p50_ms', 'p99_ms', 'p999_ms', 'max_ms')} | "
        f"{_cell(lr3, 'p50_ms', 'p99_ms', 'p999_ms', 'max_ms')} |",
        f"| trade -> stored by the leader, p50 / p99, ms | "
        f"{_cell(ls, 'stored_p50_ms', 'stored_p99_ms')} | "
        f"{_cell(lr3, 'stored_p50_ms', 'stored_p99_ms')} |",
        f"| latency samples | {_cell(ls, 'samples')} | {_cell(lr3, 'samples')} |",
        f"| retried / failed | {_cell(s, 'retried', 'failed')} | "
        f"{_cell(r3, 'retried', 'failed')} |",
        f"| stored bytes per message | {_cell(s, 'stored_bytes_per_message')} | "
        f"{_cell(r3, 'stored_bytes_per_message')} |",
        "",
        f"One trio -> asyncio-thread call: {hop.get('asyncio_thread_call_us', 'not run')} us; "
        f"`trio.to_thread.run_sync`: {hop.get('trio_to_thread_us', 'not run')} us (a no-op "
        "each: why the sink hands over whole chunks).", "",
        "Each figure is one run (the throughput is one timed pass; the latency is every "
        "trade of the window).", "",
    ]
    out.write_text("\n".join(lines))
    return out


def _nats_version() -> str:
    try:
        return subprocess.run([nats_server_binary(), "--version"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "nats-server (version unknown)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default="hop,throughput,latency")
    parser.add_argument("--summary", default=None,
                        help="Markdown summary path (default bench/results/<date>-nats.md; "
                        "'' to skip)")
    args = parser.parse_args()
    only = set(args.only.split(","))
    n = 50_000 if args.quick else 200_000
    seconds = 5.0 if args.quick else 15.0
    started = time.time()
    results: dict[str, Any] = {"loadavg_start": os.getloadavg(), "machine": machine_info()}
    if "hop" in only:
        results["hop"] = trio.run(bench_hop, 5_000)
        print("hop", results["hop"], flush=True)
    single = NatsServer().start()
    cluster = NatsCluster().start()
    try:
        for name, urls, replicas, servers in (("single", [single.url], 1, [single]),
                                              ("r3", cluster.urls, 3, cluster.nodes)):
            if "throughput" in only:
                pids = [srv.process.pid for srv in servers if srv.process is not None]
                r = trio.run(bench_throughput, urls, replicas, n, pids)
                results[f"throughput_{name}"] = r
                print(f"throughput {name}", r, flush=True)
            if "latency" in only:
                r = bench_latency(urls, replicas, 2_000, seconds)
                results[f"latency_{name}"] = r
                print(f"latency {name} @2000/s", r, flush=True)
    finally:
        single.stop()
        cluster.stop()
    results["loadavg_end"] = os.getloadavg()
    print(json.dumps(results, indent=1))
    if args.summary != "":
        print(f"summary: {write_summary(args, results, started, n, seconds)}")


if __name__ == "__main__":
    main()
