"""The ``postgres`` sink: trade rows/s into PostgreSQL, the streamer's CPU for them, and the
trade -> committed row latency at 2,000 trades/s.

Starts its own PostgreSQL (tests/postgres_server.py: initdb in a temporary directory, a free
loopback port; as ``nobody`` when run as root), never the machine's own server.

- ``throughput``: the sink alone, flat out: N trades pushed into its inbox in batches of 100
  (one socket read's worth), timed until every row is committed. CPU is this process
  (trio thread + the writer's worker thread, ``time.process_time``); beside it the server's
  CPU over the same window (the postmaster and its children from /proc, with the children
  that ended meanwhile), and the sum. Target: >= 50,000 rows/s with <= 1 core.
- ``latency``: 2,000 trades/s in batches of 20 every 10 ms; latency = the moment the write
  holding a batch returned (committed) - the moment the batch was put in the inbox.

Writes its results to bench/results/<UTC date>-<time>-postgres.md (commit, machine, settings).

    .venv/bin/python bench/bench_postgres.py [--quick]

``--compare OLD_CHECKOUT``: the throughput part only, old install against new in the same
run, on one server: each run is a child process of this file on one checkout's
``.venv/bin/python`` (its own ``streamer_postgres``; the bench code is this file for both),
``--rounds`` rounds, the order of the two sides rotated every round, the load average
before and after each run. Writes bench/results/<UTC date>-<time>-postgres-ab.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from typing import Any

import trio

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

from postgres_server import PASSWORD, PASSWORD_ENV, PostgresServer

from streamer import Context, Inbox, Trade
from streamer._metrics import Metrics
from streamer_postgres.config import PostgresSinkConfig
from streamer_postgres.sink import PostgresSink

BATCH = 100


def _sink(dsn: str, schema: str, **options: Any) -> PostgresSink:
    config = PostgresSinkConfig(dsn=dsn, password_env=PASSWORD_ENV, schema=schema, **options)
    context = Context(name="pg", type="postgres", logger=logging.getLogger("bench.pg"),
                      metrics=Metrics())
    return PostgresSink(config, context)


def _trades(start: int, n: int, ts: int) -> list[Trade]:
    return [Trade(channel="linear", symbol="BTCUSDT", ts=ts, side="Buy", price="65000.10",
                  size="0.001", trade_id=f"{i:012d}") for i in range(start, start + n)]


def server_cpu_seconds(server: PostgresServer | None) -> float:
    """utime + stime of the server's processes, with the children the postmaster reaped (a
    backend that ended counts)."""
    if server is None:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in server.pids():
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
        if server.process is not None and pid == server.process.pid:
            total += int(fields[13]) + int(fields[14])
    return total / ticks


async def bench_throughput(dsn: str, n: int, schema: str = "bench_throughput",
                           server: PostgresServer | None = None) -> dict[str, Any]:
    sink = _sink(dsn, schema, flush_size=10_000, max_buffer=n)
    batches = [_trades(i, BATCH, 1_700_000_000_000 + i) for i in range(0, n, BATCH)]
    inbox = Inbox("bench", len(batches) + 1, "block")
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.run, inbox)
        cpu0, t0 = time.process_time(), time.perf_counter()
        server0 = server_cpu_seconds(server)
        for batch in batches:
            await inbox.put(batch)
        await sink.writer.wait_written(n)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
        server_cpu = server_cpu_seconds(server) - server0
        inbox.close()
    result = {"rows": n, "rows_per_s": round(n / wall), "wall_s": round(wall, 2),
              "cpu_s": round(cpu, 2), "cores": round(cpu / wall, 2),
              "cpu_per_100k_rows_s": round(cpu * 100_000 / n, 3),
              "flushes": sink.context.metrics["flushes"]}
    if server is not None:
        result.update(server_cpu_per_100k_rows_s=round(server_cpu * 100_000 / n, 3),
                      with_server_cpu_per_100k_rows_s=round((cpu + server_cpu) * 100_000 / n, 3))
    return result


async def bench_latency(server: PostgresServer, rate: int, seconds: float) -> dict[str, Any]:
    sink = _sink(server.dsn, "bench_latency")
    per_tick, tick = rate // 100, 0.01
    inbox = Inbox("bench", 10_000, "block")
    latencies: list[float] = []
    sent: list[tuple[int, float]] = []  # (rows written once this batch is, put time)
    arrived = trio.Event()

    async def watch() -> None:
        done = 0
        while True:
            while done >= len(sent):
                await arrived.wait()
            target, put_at = sent[done]
            await sink.writer.wait_written(target)
            latencies.append((trio.current_time() - put_at) * 1000)
            done += 1

    async with trio.open_nursery() as nursery:
        await nursery.start(sink.run, inbox)
        nursery.start_soon(watch)
        cpu0, t0 = time.process_time(), trio.current_time()
        server0 = server_cpu_seconds(server)
        start = t0
        count = 0
        while trio.current_time() - t0 < seconds:
            await inbox.put(_trades(count, per_tick, int(time.time() * 1000)))
            count += per_tick
            sent.append((count, trio.current_time()))
            arrived.set()
            start += tick
            await trio.sleep_until(start)
        await sink.writer.wait_written(count)
        cpu = time.process_time() - cpu0
        server_cpu = server_cpu_seconds(server) - server0
        while len(latencies) < len(sent):
            await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    q = statistics.quantiles(latencies, n=1000)
    return {"rows": count, "rate_per_s": round(count / seconds), "p50_ms": round(q[499], 1),
            "p99_ms": round(q[989], 1), "max_ms": round(max(latencies), 1),
            "cores": round(cpu / seconds, 3), "server_cores": round(server_cpu / seconds, 3)}


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=5, cwd=os.path.dirname(__file__)
                              ).stdout.strip()
    except OSError:
        return "unknown"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _child(dsn: str, rows: int, schema: str) -> None:
    """One throughput run on this interpreter's install; one JSON line on stdout."""
    import streamer_postgres

    result = trio.run(bench_throughput, dsn, rows, schema)
    result["install"] = os.path.dirname(streamer_postgres.__file__)
    print(json.dumps(result), flush=True)


def _compare(old: str, rounds: int, rows: int) -> None:
    here = os.path.abspath(__file__)
    new = os.path.dirname(os.path.dirname(here))
    sides = {"old": os.path.abspath(old), "new": new}
    # What is measured: the checkouts as they are now (not after a commit during the run).
    commits = {side: subprocess.run(["git", "-C", path, "rev-parse", "--short", "HEAD"],
                                    capture_output=True, text=True).stdout.strip()
               for side, path in sides.items()}
    dirty = subprocess.run(["git", "-C", new, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    os.environ[PASSWORD_ENV] = PASSWORD
    server = PostgresServer().start()
    runs: list[dict[str, Any]] = []
    try:
        for r in range(rounds):
            for side in (("old", "new") if r % 2 == 0 else ("new", "old")):
                schema = f"ab_{r}_{side}"
                load_before = os.getloadavg()[0]
                done = subprocess.run(
                    [os.path.join(sides[side], ".venv", "bin", "python"), here, "--child",
                     server.dsn, "--rows", str(rows), "--schema", schema],
                    capture_output=True, text=True, timeout=600, env=dict(os.environ))
                if done.returncode != 0:
                    raise SystemExit(f"{side} run failed:\n{done.stderr}")
                result = json.loads(done.stdout.strip().splitlines()[-1])
                result.update(side=side, round=r, load_before=load_before,
                              load_after=os.getloadavg()[0])
                runs.append(result)
                print(side, r, {k: result[k] for k in ("rows_per_s", "cpu_per_100k_rows_s")},
                      flush=True)
                with server.connect() as conn:
                    conn.execute(f"DROP SCHEMA {schema} CASCADE")
    finally:
        server.stop()
    now = datetime.now(timezone.utc)
    out = os.path.join(os.path.dirname(here), "results", f"{now:%Y-%m-%d-%H%M}-postgres-ab.md")
    with open(out, "w") as f:
        f.write(f"# bench_postgres.py --compare ({now:%Y-%m-%d %H:%M} UTC)\n\n")
        f.write(f"`.venv/bin/python bench/bench_postgres.py --compare {old} --rounds {rounds} "
                f"--rows {rows}`: the postgres sink flat out ({rows:,} trade rows in batches "
                f"of {BATCH}, flush_size 10,000), old install {commits['old']} against new "
                f"{commits['new']}{' (with uncommitted changes)' if dirty else ''}, one "
                "server, order rotated every round. CPU is the streamer process's (trio "
                "thread + writer thread), not the server's.\n\n")
        f.write("| side | rows/s, median (range) | CPU s per 100k rows, median (range) |\n"
                "|---|---|---|\n")
        for side in ("old", "new"):
            mine = [x for x in runs if x["side"] == side]
            rate = [x["rows_per_s"] for x in mine]
            cpu = [x["cpu_per_100k_rows_s"] for x in mine]
            f.write(f"| {side} ({commits[side]}) | {statistics.median(rate):,.0f} "
                    f"({min(rate):,}-{max(rate):,}) | {statistics.median(cpu):.3f} "
                    f"({min(cpu)}-{max(cpu)}) |\n")
        f.write("\n```json\n" + json.dumps({
            "runs": runs, "machine": {"nproc": os.cpu_count(), "cpu_model": _cpu_model(),
                                     "python": platform.python_version(),
                                     "postgres_bin": server.bin},
            "settings": {"rounds": rounds, "rows": rows, "batch": BATCH, "flush_size": 10_000,
                         "max_buffer": rows, "old": sides["old"], "new": new,
                         "server": "fsync=off, synchronous_commit=on (tests' server)"}},
            indent=1) + "\n```\n")
    print(f"results: {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--compare", metavar="OLD_CHECKOUT")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--child", metavar="DSN", help=argparse.SUPPRESS)
    parser.add_argument("--schema", default="bench_throughput", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.rows, args.schema)
        return
    if args.compare:
        _compare(args.compare, args.rounds, args.rows)
        return
    n = 100_000 if args.quick else 500_000
    seconds = 5.0 if args.quick else 20.0
    os.environ[PASSWORD_ENV] = PASSWORD
    results: dict[str, Any] = {"loadavg_start": os.getloadavg()}
    server = PostgresServer().start()
    try:
        results["throughput"] = trio.run(bench_throughput, server.dsn, n, "bench_throughput",
                                         server)
        print("throughput", results["throughput"], flush=True)
        results["latency_2000"] = trio.run(bench_latency, server, 2_000, seconds)
        print("latency @2000/s", results["latency_2000"], flush=True)
    finally:
        server.stop()
    results["loadavg_end"] = os.getloadavg()
    now = datetime.now(timezone.utc)
    machine = {"nproc": os.cpu_count(), "cpu_model": _cpu_model(),
               "python": platform.python_version(), "postgres_bin": server.bin}
    settings = {"quick": args.quick, "throughput_rows": n, "latency_seconds": seconds,
                "batch": BATCH, "server": "fsync=off, synchronous_commit=on (tests' server)"}
    out = os.path.join(os.path.dirname(__file__), "results",
                       f"{now:%Y-%m-%d-%H%M}-postgres.md")
    t, lat = results["throughput"], results["latency_2000"]
    with open(out, "w") as f:
        f.write(f"# bench_postgres.py ({now:%Y-%m-%d %H:%M} UTC, commit {_commit()})\n\n")
        f.write(f"`.venv/bin/python bench/bench_postgres.py{' --quick' if args.quick else ''}`"
                f"; load average {results['loadavg_start'][0]:.2f} at the start, "
                f"{results['loadavg_end'][0]:.2f} at the end.\n\n")
        f.write("| what | figure | target |\n|---|---|---|\n")
        f.write(f"| trade rows/s, flat out | {t['rows_per_s']:,} | >= 50,000 |\n")
        f.write(f"| streamer CPU while doing it | {t['cores']} cores "
                f"({t['cpu_per_100k_rows_s']} s per 100k rows) | <= 1 core |\n")
        f.write(f"| the server's CPU over the same window: per 100k rows / with the streamer's |"
                f" {t['server_cpu_per_100k_rows_s']} s / {t['with_server_cpu_per_100k_rows_s']}"
                " s | |\n")
        f.write(f"| trade -> committed row at {lat['rate_per_s']:,}/s, p50 / p99 / max | "
                f"{lat['p50_ms']} / {lat['p99_ms']} / {lat['max_ms']} ms | |\n")
        f.write(f"| streamer CPU at 2,000/s / the server's | {lat['cores']} / "
                f"{lat['server_cores']} cores | |\n\n")
        f.write("```json\n" + json.dumps({"results": results, "machine": machine,
                                          "settings": settings}, indent=1) + "\n```\n")
    print(f"results: {out}")


if __name__ == "__main__":
    main()
