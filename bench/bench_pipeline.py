"""End-to-end benchmark of the streamer pipeline against the fake Bybit, next to the
strongest baselines, in the same run.

    .venv/bin/python bench/bench_pipeline.py [--quick] [--only SECTIONS] [--repeat N]
                                             [--json bench/results/pipeline.json]

Sections (``--only rates,curve,latency,tls,soak,profile``; default rates,curve,latency,tls):

- rates: the fake at 1,000 / 5,000 / 20,000 msg/s and flat out (50 symbols, one trade per
  message). Every round runs every client once, in an order rotated from round to round:
  the streamer's light pipeline (bybit.linear -> klines.from_trades 1m 5m 1h 4h 1D,
  first_candle partial -> closed klines to a counting sink) and its realistic pipeline
  (trades + every-trade kline updates -> redis and -> the websocket sink with 10 clients),
  each without and with ``coalesce_ms = 5``; the bare asyncio ``websockets`` client + json
  and + orjson; the same kind of client on the source's own sans-I/O transport + orjson
  (the floor: parsing alone); cryptofeed (its Bybit feed, trades, a counting callback; its
  release from the package index, installed by this bench into its own virtual environment).
- curve: 1,000 msg/s, light pipeline, coalesce_ms 0 / 1 / 2 / 5 / 10 with the json client in
  every round: CPU per message against the wait.
- latency: 2,000 msg/s, updates = "every_trade", 1s klines among the intervals: trade T ->
  kline update at the sink (p50 / p99 / p99.9 / max) and closed 1s klines: arrival -
  (boundary + waiter 100 ms), over >= 20 boundaries; for each coalesce_ms of the curve.
- tls: flat out over wss:// (one TLS record per message) vs ws://.
- soak: 600 linear + 600 spot symbols, trades + tickers, 10,000 trade msg/s per category
  (20,000 in all), 10 minutes (``--soak-minutes``): RSS over time and its growth.
- profile: py-spy (or cProfile) of the flat-out streamer run.

Each figure is the median of ``--repeat`` rounds (>= 3 in full mode) with min and max; ratios
are taken per round (clients of one round ran back to back on the same fake). The load
average is recorded at the start and end of every section. A Markdown summary of the run
(``--summary``, default ``bench/results/<UTC date>-<sections>.md``) is meant to be committed;
the raw JSON is not.

Every process (fake, redis-server, streamer, baselines) is a child of this one, on
127.0.0.1, bounded in time and message count, and ended on exit. CPU figures are each
client's own getrusage over its measured window (after a warm-up), so start-up and imports
are not counted.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_e2e_common import (
    BENCH,
    PYTHON,
    ROOT,
    Child,
    Children,
    start_fake,
)

SECTIONS = ("rates", "curve", "latency", "tls", "soak", "profile", "idle")
DEFAULT_SECTIONS = ("rates", "curve", "latency", "tls")
INTERVALS = "1m,5m,1h,4h,1D"
LATENCY_INTERVALS = "1s,1m,5m,1h,4h,1D"
RATES = (1000, 5000, 20000, 0)  # 0: flat out
COALESCE = 5.0  # the coalesce_ms the targets are stated with
CURVE = (0.0, 1.0, 2.0, 5.0, 10.0)

#: cryptofeed's release for this interpreter (3.0 needs Python >= 3.13), installed by the
#: bench into its own virtual environment: never a dependency of the product.
CRYPTOFEED = "cryptofeed==2.4.1"
CRYPTOFEED_VENV = BENCH / ".venv-cryptofeed"

#: client key -> label
CLIENTS = {
    "light": "streamer light, coalesce_ms 0",
    "light_c5": "streamer light, coalesce_ms 5 (default)",
    "redis": "streamer redis, coalesce_ms 0",
    "redis_c5": "streamer redis, coalesce_ms 5",
    "real": "streamer realistic (redis + ws x10), coalesce_ms 0",
    "real_c5": "streamer realistic, coalesce_ms 5",
    "json": "bare asyncio websockets + json",
    "orjson": "bare asyncio websockets + orjson",
    "floor": "floor: source's transport + orjson, no coalescing (a floor flat out only)",
    "floor_c5": "floor: source's transport + orjson, coalescing like the pipeline (5)",
    "cryptofeed": "cryptofeed (Bybit feed, trades)",
    "timer_c5": "the source's coalescing timer alone: the 5 ms wait in a loop, no socket",
    "trio_timer_c5": "trio's own timer alone (trio.sleep): the 5 ms wait in a loop, no socket",
}

#: Every setting of each client of the rates section (written into the summary).
CLIENT_SETTINGS = {
    "light": "bybit.linear (50 symbols, trades, coalesce_ms 0) -> klines.from_trades "
             f"({INTERVALS}, first_candle partial, updates closed, waiter 100 ms) -> "
             "bench.count (closed klines; queue_size 100000); bench.tap counts the trades "
             "inline",
    "light_c5": "as light, coalesce_ms 5 (the source's default)",
    "redis": "as light with updates every_trade; trades + kline updates also to the redis "
             "sink (pub/sub, flush window 10 ms default) on a redis-server the bench starts; "
             "coalesce_ms 0",
    "redis_c5": "as redis, coalesce_ms 5",
    "real": "as redis, plus the websocket sink (port 0) with 10 asyncio clients in their own "
            "process (not counted); coalesce_ms 0",
    "real_c5": "as real, coalesce_ms 5",
    "json": "websockets asyncio client (compression off, no pings, max_size None), "
            "json.loads per message",
    "orjson": "as json, orjson.loads",
    "floor": "the source's trio WebSocket transport, orjson.loads per message, reads again "
             "at once after every read",
    "floor_c5": "as floor, waits on the source's timer (WakeTimer where the install has it) "
                "until 5 ms after a read under 32 KiB (the source's rule; its skip of the wait "
                "on sparse traffic does not apply at these rates)",
    "cryptofeed": f"{CRYPTOFEED} Bybit feed, TRADES channel, a counting callback, uvloop",
    "timer_c5": "bench_e2e_trio_baseline.py --timer-only --timer source: the wait the "
                "source's reader makes (streamer.net.WakeTimer, a timerfd; trio.sleep on an "
                "install without it) of 5 ms in a loop, no connection: the cost of the "
                "coalescing wait's wake-up alone (per read: per wake-up; no messages, so no "
                "CPU per message nor ratio)",
    "trio_timer_c5": "as the source's timer alone, --timer trio: trio.sleep(5 ms) (a "
                     "cancel-scope deadline, what the source waited on before WakeTimer)",
}

#: The idle section's clients: the fake at 1 msg/s, 50 symbols.
IDLE_CLIENTS = {
    "idle_ws": "streamer, websocket sink with 10 idle clients",
    "idle_light": "streamer light",
    "json": "bare asyncio websockets + json",
}
IDLE_RATE = 1.0
IDLE_BOUND = 0.3  # % of a core, the idle_ws target

#: The settings of the other sections' rows.
SECTION_SETTINGS = {
    "curve": "fake 1,000 msg/s batched, 50 symbols; light pipeline with each coalesce_ms, the "
             "json client in every round; window `--duration 5 --warmup 1` (3 quick)",
    "latency": "fake 2,000 msg/s batched with --stamp, 50 symbols; light pipeline with "
               f"updates every_trade, intervals {LATENCY_INTERVALS}, the sink also takes the "
               "trades; 25 s (12 quick), warm-up 2 s",
    "tls": "fake flat out, ws:// and wss:// (one TLS record per message), 50 symbols; the "
           "streamer light pipeline (coalesce_ms default 5) and the asyncio + orjson "
           "client, 300k messages (100k quick)",
    "soak": "fake 600 linear + 600 spot symbols, trades + tickers, --soak-rate trade msg/s "
            "per category, batched; light pipeline on both sources with the source's "
            "default coalesce_ms (5); --soak-minutes",
    "profile": "fake flat out, 50 symbols; the profiled pipeline with the default "
               "coalesce_ms (5)",
    "idle": "fake 1 msg/s batched (`--rate 1`), 50 symbols, 1 trade per message; per round "
            "(order rotated): the streamer with bybit.linear (50 symbols, trades, the "
            "source's default coalesce_ms 5) -> klines.from_trades (updates every_trade) -> "
            "the websocket sink (trades + kline updates, port 0) read by 10 asyncio clients "
            "in their own process (not counted; no subscription, so every event goes to "
            "each; at 1 msg/s they are idle nearly all the time), plus bench.count and "
            "bench.tap as in the light pipeline (`--pipeline ws`); the light pipeline alone; "
            "the json client; window `--duration 20 --warmup 2` (10 quick); CPU = the "
            "process's own getrusage over the window, as % of one core",
}

#: Clients that talk to a server the bench runs (its CPU is reported beside theirs).
WITH_SERVER = ("redis", "redis_c5", "real", "real_c5")


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: list[float]) -> dict[str, float]:
    """Median, min and max (NaN when empty)."""
    if not values:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values)}


def fmt_spread(sp: dict[str, float], spec: str = ".2f", suffix: str = "") -> str:
    if not sp.get("n"):
        return "-"
    return (f"{sp['median']:{spec}}{suffix} ({sp['min']:{spec}}-{sp['max']:{spec}}, "
            f"n={sp['n']})")


def rate_label(rate: int) -> str:
    return "flat out" if rate == 0 else f"{rate:,} msg/s"


def ensure_cryptofeed(log: Any) -> str | None:
    """The python of the bench's cryptofeed environment, created on first use (pip install
    from the package index); None if that fails (the bench goes on without it)."""
    python = CRYPTOFEED_VENV / "bin" / "python"
    if python.exists():
        return str(python)
    base = Path(getattr(sys, "_base_executable", sys.executable))
    log(f"creating {CRYPTOFEED_VENV} ({CRYPTOFEED} + uvloop; once)")
    try:
        subprocess.run([str(base), "-m", "venv", str(CRYPTOFEED_VENV)], check=True,
                       timeout=120)
        subprocess.run([str(python), "-m", "pip", "install", "-q", CRYPTOFEED, "uvloop"],
                       check=True, timeout=600, stdout=subprocess.DEVNULL)
    except (subprocess.SubprocessError, OSError) as exc:
        log(f"cryptofeed environment failed: {exc}")
        shutil.rmtree(CRYPTOFEED_VENV, ignore_errors=True)
        return None
    return str(python)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.quick: bool = args.quick
        self.children = Children()
        self.results: dict[str, Any] = {}
        self.rows: list[tuple[str, str, str, str]] = []  # section/metric, value, target, verdict
        self.redis: Any = None
        self.cryptofeed_python: str | None = None
        #: The interpreter (and so the install) of the children that run product code: the
        #: streamer and the floor (which uses the source's transport). The fake, redis and
        #: the bare clients always run on this bench's own interpreter.
        self.streamer_python: str = args.streamer_python or PYTHON

    # -- children ----------------------------------------------------------------------------

    def redis_port(self) -> int:
        if self.redis is None:
            sys.path.insert(0, str(ROOT / "tests"))
            from redis_server import RedisServer

            self.redis = RedisServer()
            self.redis.__enter__()
        return int(self.redis.port)

    def streamer(self, info: dict[str, Any], *extra: str, timeout: float = 300.0,
                 prefix: list[str] | None = None, intervals: str = INTERVALS
                 ) -> dict[str, Any]:
        argv = [*(prefix or []), self.streamer_python, str(BENCH / "bench_e2e_streamer.py"),
                "--ws-linear", info["ws_linear"], "--rest", info["rest"],
                "--intervals", intervals, "--timeout", str(timeout), *extra]
        if "cafile" in info:
            argv += ["--ca-file", info["cafile"]]
        return self._run(argv, "streamer", timeout)

    def baseline(self, info: dict[str, Any], decoder: str, *extra: str,
                 timeout: float = 300.0) -> dict[str, Any]:
        argv = [PYTHON, str(BENCH / "bench_e2e_baseline.py"), "--url", info["ws_linear"],
                "--decoder", decoder, "--timeout", str(timeout), *extra]
        if "cafile" in info:
            argv += ["--ca-file", info["cafile"]]
        return self._run(argv, f"baseline-{decoder}", timeout)

    def trio_baseline(self, info: dict[str, Any], *extra: str,
                      timeout: float = 300.0) -> dict[str, Any]:
        argv = [self.streamer_python, str(BENCH / "bench_e2e_trio_baseline.py"), "--url",
                info["ws_linear"],
                "--timeout", str(timeout), *extra]
        return self._run(argv, "baseline-trio", timeout)

    def cryptofeed(self, info: dict[str, Any], *extra: str,
                   timeout: float = 300.0) -> dict[str, Any] | None:
        if self.cryptofeed_python is None:
            return None
        argv = [self.cryptofeed_python, str(BENCH / "bench_e2e_cryptofeed.py"),
                "--ws", info["ws_linear"], "--rest", info["rest"], "--timeout", str(timeout),
                *extra]
        return self._run(argv, "cryptofeed", timeout)

    def client(self, key: str, info: dict[str, Any], window: list[str],
               timeout: float = 300.0) -> dict[str, Any] | None:
        """One measured run of client ``key`` (see CLIENTS) on the fake ``info``."""
        coalesce = str(COALESCE if key.endswith("_c5") else 0.0)
        if key.split("_")[0] in ("light", "redis", "real"):
            extra = ["--coalesce-ms", coalesce]
            pipeline = {"light": "light", "redis": "redis", "real": "realistic"}[
                key.split("_")[0]]
            if pipeline != "light":
                extra += ["--pipeline", pipeline, "--redis-port", str(self.redis_port()),
                          "--server-pid", str(self.redis.process.pid)]
            return self.streamer(info, *window, *extra, timeout=timeout)
        if key in ("json", "orjson"):
            return self.baseline(info, key, *window, timeout=timeout)
        if key in ("floor", "floor_c5"):
            return self.trio_baseline(info, *window, "--coalesce-ms", coalesce,
                                      timeout=timeout)
        if key in ("timer_c5", "trio_timer_c5"):
            if "--duration" not in window:
                return None  # flat out has no waits
            return self.trio_baseline(info, *window, "--coalesce-ms", coalesce,
                                      "--timer-only", "--timer",
                                      "source" if key == "timer_c5" else "trio",
                                      timeout=timeout)
        if key in ("idle_ws", "idle_light"):
            extra = ["--pipeline", "ws"] if key == "idle_ws" else []
            return self.streamer(info, *window, *extra, timeout=timeout)
        if key == "cryptofeed":
            return self.cryptofeed(info, *window, timeout=timeout)
        raise ValueError(key)

    def _run(self, argv: list[str], name: str, timeout: float) -> dict[str, Any]:
        child = self.children.start(argv, name=name)
        try:
            result = child.read_json(timeout + 30, want="result")
            child.wait(15)
        finally:
            self.children.stop(child)
        result["progress"] = [x for x in child.lines if x.get("event") == "progress"]
        result["ready"] = next((x for x in child.lines if x.get("event") == "ready"), None)
        errors = [ln for ln in child.stderr_text().splitlines()
                  if " ERROR " in ln or "Traceback" in ln]
        if errors:
            result["errors"] = errors[:20]
        if result.get("reads") and not result.get("messages"):  # the timer alone
            result["reads_per_s"] = result["reads"] / result["wall_s"]
            result["cpu_per_read_us"] = result["cpu_s"] / result["reads"] * 1e6
            result["wakeups_per_s"] = result.get("ctx_voluntary", 0) / result["wall_s"]
        if result.get("messages"):
            result["msg_per_s"] = result["messages"] / result["wall_s"]
            result["cpu_per_100k"] = result["cpu_s"] / result["messages"] * 100_000
            if "server_cpu_s" in result:
                result["cpu_with_server_per_100k"] = (
                    (result["cpu_s"] + result["server_cpu_s"]) / result["messages"] * 100_000)
            if "ctx_voluntary" in result:
                result["wakeups_per_s"] = result["ctx_voluntary"] / result["wall_s"]
            if result.get("reads"):
                result["reads_per_s"] = result["reads"] / result["wall_s"]
                result["cpu_per_read_us"] = result["cpu_s"] / result["reads"] * 1e6
                result["messages_per_read"] = result["messages"] / result["reads"]
        return result

    def row(self, metric: str, value: str, target: str = "", verdict: str = "") -> None:
        self.rows.append((metric, value, target, verdict))
        print(f"  {metric:<52} {value:<34} {target:<20} {verdict}", flush=True)

    def rounds(self, info: dict[str, Any], keys: list[str], window: list[str],
               runs: dict[str, list[dict[str, Any]]], offset: int = 0) -> None:
        """``repeat`` rounds of every client in ``keys``, the order rotated each round."""
        for r in range(self.args.repeat):
            k = (r + offset) % len(keys)
            order = keys[k:] + keys[:k]
            for key in order:
                try:
                    res = self.client(key, info, window)
                except (TimeoutError, RuntimeError) as exc:
                    res = {"failed": str(exc)[:300]}
                    self.results.setdefault("failures", {}).setdefault(key, []).append(
                        res["failed"])
                if res is not None:
                    res["round"] = r
                    runs[key].append(res)

    def block(self, fake: Child, info: dict[str, Any], keys: list[str], window: list[str],
              offset: int) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
        """:meth:`rounds` of ``keys`` on the fake ``fake`` (stopped after them): their
        summary against the json client, with the load average before and after, and the
        runs."""
        runs: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
        load0 = os.getloadavg()
        try:
            self.rounds(info, keys, window, runs, offset=offset)
        finally:
            self.children.stop(fake)
        summary = summarise(runs, "json")
        summary["loadavg"] = [load0, os.getloadavg()]
        return summary, runs

    # -- sections ------------------------------------------------------------------------------

    def rates(self) -> None:
        if "cryptofeed" in self.args.clients:
            self.cryptofeed_python = ensure_cryptofeed(print)
            if self.cryptofeed_python is None:
                self.results.setdefault("notes", []).append(
                    f"cryptofeed skipped: {CRYPTOFEED} could not be installed")
        keys = [k for k in CLIENTS if k in self.args.clients]
        if self.cryptofeed_python is None and "cryptofeed" in keys:
            keys.remove("cryptofeed")
        out: dict[str, Any] = {}
        duration = "3" if self.quick else "4"
        count = "100000" if self.quick else "300000"
        blocks = [(rate, pacing) for rate in self.args.rates
                  for pacing in (self.args.pacings if rate else ["batched"])]
        for i, (rate, pacing) in enumerate(blocks):
            window = (["--count", count] if rate == 0 else ["--duration", duration]) + [
                "--warmup", "1"]
            fake, info = start_fake(self.children, symbols=50, rate=rate, pacing=pacing)
            summary, runs = self.block(fake, info, keys, window, offset=i)
            summary["settings"] = {"rate": rate, "pacing": pacing, "symbols": 50,
                                   "trades_per_message": 1, "window": " ".join(window),
                                   "rounds": self.args.repeat, "clients": keys}
            out[f"{rate}" if rate == 0 else f"{rate}-{pacing}"] = {"summary": summary,
                                                                    "runs": runs}
            self.rate_rows(rate, pacing, summary)
        self.results["rates"] = out

    def rate_rows(self, rate: int, pacing: str, summary: dict[str, Any]) -> None:
        label = rate_label(rate) + (f", {pacing}" if rate else "")
        la = summary["loadavg"]
        self.row(f"{label}: load average before / after",
                 f"{la[0][0]:.2f} / {la[1][0]:.2f} (1 min)")
        for key in summary["clients"]:
            s = summary["clients"][key]
            if not s["cpu_per_100k"]["n"]:
                continue  # the timer alone: per-read rows only
            self.row(f"{label}: {CLIENTS[key]}",
                     f"{fmt_spread(s['cpu_per_100k'], '.3f')} CPU-s/100k",
                     f"{s['msg_per_s']['median']:,.0f} msg/s")
        ratios = summary["ratio_vs_json"]
        cf = ratios.get("cryptofeed", {}).get("median", float("nan"))
        for key in summary["clients"]:
            if key == "json" or not ratios[key]["n"]:
                continue
            sp = ratios[key]
            target, verdict = "", ""
            bound = {1000: 0.65, 5000: 0.55}.get(rate)
            if key == "light_c5" and bound is not None:
                has_cf = cf == cf  # not NaN
                target = f"<= {bound:.2f}x" + (f", < cryptofeed {cf:.2f}x" if has_cf else "")
                ok = sp["median"] <= bound and (not has_cf or sp["median"] < cf)
                verdict = "met" if ok else "MISSED"
            elif key in ("light", "light_c5") and rate == 0:
                target = "<= 0.40x"
                verdict = "met" if sp["median"] <= 0.40 else "MISSED"
            elif key in ("redis", "redis_c5") and rate == 0:
                target = "<= 0.60x"
                verdict = "met" if sp["median"] <= 0.60 else "MISSED"
            elif key in ("redis", "redis_c5") and rate == 1000:
                target = "<= 1.0x"
                verdict = "met" if sp["median"] <= 1.0 else "MISSED"
            self.row(f"{label}: {CLIENTS[key]} / json", fmt_spread(sp, ".2f", "x"),
                     target, verdict)
            if key in WITH_SERVER:
                self.row(f"{label}: {CLIENTS[key]} + redis-server CPU / json",
                         fmt_spread(summary["ratio_with_server_vs_json"][key], ".2f", "x"),
                         "same runs, the server's CPU over the same window")
        for key in summary["clients"]:
            s = summary["clients"][key]
            parts = []
            if s["cpu_per_read_us"]["n"]:
                parts.append(f"{fmt_spread(s['cpu_per_read_us'], '.0f')} us CPU/read")
                parts.append(f"{s['reads_per_s']['median']:,.0f} reads/s")
                if s["messages_per_read"]["n"]:
                    parts.append(f"{s['messages_per_read']['median']:.1f} msg/read")
            if s["wakeups_per_s"]["n"]:
                parts.append(f"{s['wakeups_per_s']['median']:,.0f} wake-ups/s")
            if not parts:
                continue
            target = verdict = ""
            if key == "light_c5" and rate == 1000 and pacing == "even":
                target = "<= 150 us per read cycle"
                verdict = ("met" if s["cpu_per_read_us"]["median"] <= 150 else "MISSED")
            self.row(f"{label}: {CLIENTS[key]}: per read", "; ".join(parts), target, verdict)

    def idle(self) -> None:
        """The fake at 1 msg/s: what the pipeline costs when nearly nothing happens."""
        duration = "10" if self.quick else "20"
        window = ["--duration", duration, "--warmup", "2"]
        fake, info = start_fake(self.children, symbols=50, rate=IDLE_RATE)
        runs: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
        load0 = os.getloadavg()
        keys = list(IDLE_CLIENTS)
        try:
            self.rounds(info, keys, window, runs)
        finally:
            self.children.stop(fake)
        load1 = os.getloadavg()
        out: dict[str, Any] = {"loadavg": [load0, load1], "runs": runs, "clients": {}}
        self.row("idle: load average before / after", f"{load0[0]:.2f} / {load1[0]:.2f} (1 min)")
        for key in keys:
            rs = [r for r in runs[key] if r.get("wall_s")]
            core = spread([r["cpu_s"] / r["wall_s"] * 100 for r in rs])
            wakeups = spread([r["ctx_voluntary"] / r["wall_s"] for r in rs
                              if "ctx_voluntary" in r])
            msgs = spread([r.get("messages", 0) / r["wall_s"] for r in rs])
            out["clients"][key] = {"core_pct": core, "wakeups_per_s": wakeups,
                                   "msg_per_s": msgs,
                                   "ws_clients": [r.get("ws_clients") for r in rs]}
            target = verdict = ""
            if key == "idle_ws":
                target = f"<= {IDLE_BOUND}% of a core"
                verdict = "met" if core["median"] <= IDLE_BOUND else "MISSED"
            self.row(f"idle, {IDLE_RATE:g} msg/s: {IDLE_CLIENTS[key]}: CPU, % of a core",
                     fmt_spread(core, ".3f", "%"), target, verdict)
            self.row(f"idle, {IDLE_RATE:g} msg/s: {IDLE_CLIENTS[key]}: wake-ups/s; msg/s",
                     f"{fmt_spread(wakeups, '.1f')}; {msgs['median']:.2f}")
        self.results["idle"] = out

    def curve(self) -> None:
        duration = "3" if self.quick else "5"
        window = ["--duration", duration, "--warmup", "1"]
        fake, info = start_fake(self.children, symbols=50, rate=1000)
        runs: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
        load0 = os.getloadavg()
        try:
            for r in range(self.args.repeat):
                keys = [f"c{c:g}" for c in CURVE] + ["json"]
                k = r % len(keys)
                for key in keys[k:] + keys[:k]:
                    if key == "json":
                        res = self.baseline(info, "json", *window)
                    else:
                        res = self.streamer(info, *window, "--coalesce-ms", key[1:])
                    res["round"] = r
                    runs[key].append(res)
        finally:
            self.children.stop(fake)
        summary = summarise(runs, "json")
        summary["loadavg"] = [load0, os.getloadavg()]
        self.results["curve"] = {"summary": summary, "runs": runs}
        for c in CURVE:
            key = f"c{c:g}"
            s = summary["clients"][key]
            self.row(f"1,000 msg/s light, coalesce_ms {c:g}: CPU-s/100k",
                     fmt_spread(s["cpu_per_100k"], ".3f"),
                     f"{fmt_spread(summary['ratio_vs_json'][key], '.2f', 'x')} json")

    def latency(self) -> None:
        duration = 12.0 if self.quick else 25.0
        values = (0.0, COALESCE) if self.quick else CURVE
        out: dict[str, Any] = {}
        fake, info = start_fake(self.children, symbols=50, rate=2000, stamp=True)
        try:
            for c in values:
                r = self.streamer(info, "--duration", str(duration), "--warmup", "2",
                                  "--latency", "--updates", "every_trade",
                                  "--coalesce-ms", str(c), timeout=duration + 120,
                                  intervals=LATENCY_INTERVALS)
                r["loadavg_end"] = os.getloadavg()
                out[f"{c:g}"] = r
                lat = r["latency_ms"]
                bound = c + 2.0
                self.row(f"2,000 msg/s, coalesce_ms {c:g}: latency p50 / p99",
                         f"{lat['p50']:.2f} / {lat['p99']:.2f} ms",
                         f"p99 {'<' if c == 0 else '<='} {bound:g} ms",
                         "met" if (lat["p99"] < 2.0 if c == 0 else lat["p99"] <= bound)
                         else "MISSED")
                self.row(f"2,000 msg/s, coalesce_ms {c:g}: p99.9 / max; CPU-s/100k",
                         f"{lat['p99.9']:.2f} / {lat['max']:.2f} ms; "
                         f"{r['cpu_per_100k']:.3f}")
                d = r["close_delta_ms"]
                if d:
                    self.row(f"2,000 msg/s, coalesce_ms {c:g}: 1s close - (boundary+100ms)",
                             f"p50 {d['p50']:.2f} / p99 {d['p99']:.2f} / max {d['max']:.2f} ms",
                             f"p99 < 2 ms, >= 20 boundaries ({r['close_boundaries']})",
                             "met" if d["p99"] < 2 and r["close_boundaries"] >= 20
                             else "MISSED")
        finally:
            self.children.stop(fake)
        self.results["latency"] = out

    def soak(self) -> None:
        minutes = self.args.soak_minutes
        rate = self.args.soak_rate
        fake, info = start_fake(self.children, symbols=600, rate=rate, tickers=True,
                                duration=minutes * 60 + 300)
        load0 = os.getloadavg()
        try:
            r = self.streamer(info, "--ws-spot", info["ws_spot"], "--symbols", "600",
                              "--streams", "trades,tickers", "--duration", str(minutes * 60),
                              "--warmup", "0", "--progress", "10",
                              timeout=minutes * 60 + 180)
        finally:
            self.children.stop(fake)
        samples = [(p["t"], p["rss_kib"] / 1024) for p in r["progress"]]
        half = [s for s in samples if s[0] >= samples[-1][0] / 2] if samples else []
        slope = _slope(half) * 60 if len(half) >= 2 else float("nan")
        rss_end = r["rss_kib"] / 1024
        after_1min = next((mb for t, mb in samples if t >= 60), float("nan"))
        r["rss_mb_end"] = rss_end
        r["rss_mb_after_1min"] = after_1min
        r["rss_growth_mb_per_min"] = slope
        r["rss_mb_samples"] = [(round(t), round(mb, 1)) for t, mb in samples]
        r["loadavg"] = [load0, os.getloadavg()]
        self.results["soak"] = r
        ready = r["ready"] or {}
        conns = ready.get("connections", {})
        change = (rss_end - after_1min) / after_1min * 100 if after_1min else float("nan")
        self.row(f"soak: RSS after 1 min; after {minutes} min",
                 f"{after_1min:.0f} MB; {rss_end:.0f} MB ({change:+.1f}%)",
                 "within 10%", "met" if abs(change) <= 10 else "MISSED")
        self.row("soak: RSS growth (2nd half of run)", f"{slope:+.2f} MB/min", "flat")
        self.row("soak: connections; time to all subscribed",
                 f"{sum(conns.values())} ({conns}); {ready.get('subscribe_s', float('nan')):.1f} s")
        self.row("soak: messages/s received (trades+tickers)",
                 f"{(r['messages'] + r['tickers']) / r['wall_s']:,.0f} "
                 f"({r['cpu_s'] / r['wall_s'] * 100:.0f}% of a core)")

    def tls(self) -> None:
        n = 100_000 if self.quick else 300_000
        runs: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
        plain, pinfo = start_fake(self.children, symbols=50, rate=0)
        secure, sinfo = start_fake(self.children, symbols=50, rate=0, tls=True)
        try:
            for _ in range(self.args.repeat):
                runs["ws"].append(self.streamer(pinfo, "--count", str(n)))
                runs["wss"].append(self.streamer(sinfo, "--count", str(n)))
                runs["ws_orjson"].append(self.baseline(pinfo, "orjson", "--count", str(n)))
                runs["wss_orjson"].append(self.baseline(sinfo, "orjson", "--count", str(n)))
        finally:
            self.children.stop(plain)
            self.children.stop(secure)
        summary = self._summarise(runs)
        for key in ("wss", "wss_orjson"):
            base = "ws_orjson" if key == "wss_orjson" else "ws"
            summary[f"{key}_rate_vs_ws"] = (summary[key]["msg_per_s"]
                                            / summary[base]["msg_per_s"])
            summary[f"{key}_cpu_vs_ws"] = (summary[key]["cpu_per_100k"]
                                           / summary[base]["cpu_per_100k"])
        self.results["tls"] = {"summary": summary, "runs": runs}
        for key, label in (("ws", "ws:// streamer"), ("wss", "wss:// streamer (TLSStream)"),
                           ("ws_orjson", "ws:// bare asyncio+orjson"),
                           ("wss_orjson", "wss:// bare asyncio+orjson")):
            s = summary[key]
            self.row(f"tls: {label}",
                     f"{s['msg_per_s']:,.0f} msg/s, {s['cpu_per_100k']:.3f} CPU-s/100k")
        rate, cpu = summary["wss_rate_vs_ws"], summary["wss_cpu_vs_ws"]
        self.row("tls: streamer wss/ws msg/s; CPU/msg", f"{rate:.2f}x; {cpu:.2f}x",
                 ">= 0.7x msg/s", "met" if rate >= 0.7 else "MISSED")

    def profile(self) -> None:
        n = 200_000 if self.quick else 500_000
        fake, info = start_fake(self.children, symbols=50, rate=0)
        out_dir = Path(self.args.json).parent if self.args.json else ROOT / "bench" / "results"
        out_dir.mkdir(parents=True, exist_ok=True)
        py_spy = shutil.which("py-spy") or str(Path(PYTHON).parent / "py-spy")
        try:
            if self.args.profiler == "py-spy" and os.path.exists(py_spy):
                raw = out_dir / "pipeline_profile.txt"
                prefix = [py_spy, "record", "-r", "250", "--nonblocking", "-F", "-f", "raw",
                          "-o", str(raw), "--"]
                r = self.streamer(info, "--count", str(n), *self._profiled(), prefix=prefix)
                top = _py_spy_top(raw)
                r["profile_file"] = str(raw)
            else:
                prof = out_dir / "pipeline_profile.prof"
                r = self.streamer(info, "--count", str(n), "--cprofile", str(prof),
                                  *self._profiled())
                top = _cprofile_top(prof)
                r["profile_file"] = str(prof)
        finally:
            self.children.stop(fake)
        r["top"] = top
        self.results["profile"] = r
        self.row("profile: streamer under the profiler",
                 f"{r['msg_per_s']:,.0f} msg/s, {r['cpu_per_100k']:.3f} CPU-s/100k")
        for entry in top["self"][:12]:
            self.row(f"  self {entry['pct']:5.1f}%  {entry['name'][:40]}", entry["where"][:28])

    def _profiled(self) -> list[str]:
        if self.args.profile_pipeline == "light":
            return []
        return ["--pipeline", self.args.profile_pipeline, "--redis-port", str(self.redis_port())]

    # -- helpers -------------------------------------------------------------------------------

    @staticmethod
    def _summarise(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, rs in runs.items():
            out[key] = {
                "msg_per_s": median([r["msg_per_s"] for r in rs]),
                "cpu_per_100k": median([r["cpu_per_100k"] for r in rs]),
                "runs": len(rs),
            }
        return out

    @staticmethod
    def _ratio(runs: dict[str, list[dict[str, Any]]], a: str, b: str) -> float:
        """Median of the per-repeat ratios (each pair ran back to back on the same fake)."""
        pairs = zip(runs[a], runs[b], strict=True)
        return median([x["cpu_per_100k"] / y["cpu_per_100k"] for x, y in pairs])

    def run(self) -> None:
        only = self.args.only.split(",") if self.args.only else list(DEFAULT_SECTIONS)
        unknown = [s for s in only if s not in SECTIONS]
        if unknown:
            raise SystemExit(f"unknown section(s) {unknown}; pick from {', '.join(SECTIONS)}")
        self.results["machine"] = machine_info()
        self.results["streamer_install"] = install_info(self.streamer_python)
        self.results["mode"] = "quick" if self.quick else "full"
        self.results["repeat"] = self.args.repeat
        self.results["sections"] = only
        self.results["started_utc"] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        started = time.time()
        print(f"{'metric':<54} {'value':<34} {'target':<20} verdict", flush=True)
        try:
            for section in only:
                print(f"[{section}] load average {os.getloadavg()}", flush=True)
                t0 = time.time()
                self.results.setdefault("section_loadavg", {})[section] = [os.getloadavg()]
                try:
                    getattr(self, section)()
                except (TimeoutError, RuntimeError) as exc:
                    self.results.setdefault("failures", {})[section] = str(exc)
                    self.row(f"{section}: FAILED", str(exc).splitlines()[0][:60])
                self.results["section_loadavg"][section].append(os.getloadavg())
                self.results.setdefault("section_seconds", {})[section] = time.time() - t0
        finally:
            self.children.stop_all()
            if self.redis is not None:
                self.redis.__exit__(None, None, None)
            self.results["machine"]["loadavg_end"] = os.getloadavg()
            self.results["seconds"] = time.time() - started
            keys = ("metric", "value", "target", "verdict")
            self.results["table"] = [dict(zip(keys, r, strict=True)) for r in self.rows]
            if self.args.json:
                path = Path(self.args.json)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(self.results, indent=1, default=str) + "\n")
                print(f"wrote {path}")
            summary = self.args.summary
            if summary is None:
                stamp = time.strftime("%Y-%m-%d-%H%M", time.gmtime(started))
                summary = str(ROOT / "bench" / "results" /
                              f"{stamp}-{'-'.join(only)}{'-quick' if self.quick else ''}.md")
            if summary:
                path = Path(summary)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(self.markdown())
                print(f"wrote {path}")

    def install_lines(self) -> list[str]:
        """The streamer/floor children's install when it is another checkout's."""
        inst = self.results.get("streamer_install")
        if inst is None or inst["python"] == PYTHON:
            return []
        git = inst["git"]
        return [f"Streamer and floor children on `{inst['python']}`: commit `{git['commit']}` "
                f"({git['subject']})"
                + (f", DIRTY: {', '.join(git['dirty_files'])}" if git["dirty"] else ", clean")
                + f"; {', '.join(f'{k} {v}' for k, v in inst['versions'].items())}.  "]

    def settings_lines(self) -> list[str]:
        """Every setting of every row: the rates blocks, their clients, the other sections."""
        out = ["Settings:", ""]
        rates = self.results.get("rates", {})
        used: list[str] = []
        for block in rates.values():
            st = block["summary"]["settings"]
            out.append(f"- rates block {rate_label(st['rate'])}, pacing {st['pacing']}: fake "
                       f"`--symbols {st['symbols']} --rate {st['rate']} --pacing "
                       f"{st['pacing']} --no-tickers`, 1 trade per message; window "
                       f"`{st['window']}`; {st['rounds']} rounds")
            used += [k for k in st["clients"] if k not in used]
        for key in used:
            out.append(f"- {CLIENTS[key]}: {CLIENT_SETTINGS[key]}")
        for section in self.results.get("sections", []):
            if section in SECTION_SETTINGS:
                out.append(f"- {section}: {SECTION_SETTINGS[section]}")
        for note in self.results.get("notes", []):
            out.append(f"- note: {note}")
        return [*out, ""]

    def head_lines(self, script: str, run: str) -> list[str]:
        """The head of a run's summary: title, command, commit, ``run`` (its rounds and
        time), machine, the load at the start and end of the run and of each section."""
        m = self.results["machine"]
        load = self.results.get("section_loadavg", {})
        git = m["git"]
        load_run = (m["loadavg_start"], m["loadavg_end"])
        return [
            f"# {script.removesuffix('.py')} run {self.results['started_utc']} UTC",
            "",
            f"Command: `.venv/bin/python bench/{script} {' '.join(sys.argv[1:])}`  ",
            f"Commit: `{git['commit']}` ({git['subject']})"
            + (f", DIRTY: {', '.join(git['dirty_files'])}" if git["dirty"] else ", clean")
            + "  ",
            *self.install_lines(),
            run,
            f"Machine: {m['nproc']} CPUs, {m['cpu_model']}, {m['platform']}, Python "
            f"{m['python']}, {', '.join(f'{k} {v}' for k, v in m['versions'].items())}.  ",
            "Load average (1, 5, 15 min) at the start / end of the run: "
            f"{tuple(round(x, 2) for x in load_run[0])} / "
            f"{tuple(round(x, 2) for x in load_run[1])}; of each section: "
            + "; ".join(f"{sec} {tuple(round(x, 2) for x in la[0])} / "
                        f"{tuple(round(x, 2) for x in la[-1])}" for sec, la in load.items()),
        ]

    def table_lines(self) -> list[str]:
        """The table of every row, and the failures."""
        lines = ["| metric | value | target / note | verdict |", "|---|---|---|---|"]
        for metric, value, target, verdict in self.rows:
            lines.append(f"| {metric.strip()} | {value} | {target} | {verdict} |")
        failures = self.results.get("failures")
        if failures:
            lines += ["", "Failures: " + json.dumps(failures)[:2000]]
        return lines

    def markdown(self) -> str:
        """The small committed summary of this run: command, machine, load, the table."""
        run = (f"Mode {self.results['mode']}, {self.results['repeat']} rounds (order rotated "
               f"each round); {self.results['seconds']:.0f} s in all.  ")
        lines = [
            *self.head_lines("bench_pipeline.py", run),
            "",
            "CPU-s/100k: median (min-max, n rounds) of the client's own CPU seconds "
            "(getrusage, all threads) per 100k messages over its measured window; x json: "
            "per-round ratio to the bare asyncio websockets + json client. Per read: CPU "
            "over the reads the client made (the streamer: batches its source emitted, one "
            "per socket read with trades); wake-ups/s: voluntary context switches of all the "
            "client's threads (/proc/<pid>/task/*/status) per second of the window.",
            "",
        ]
        lines += self.settings_lines()
        lines += self.table_lines()
        return "\n".join(lines) + "\n"


def summarise(runs: dict[str, list[dict[str, Any]]], base: str) -> dict[str, Any]:
    """Per client: median/min/max of CPU-s/100k, msg/s, the per-read figures (reads from
    the client's own counter, wake-ups = voluntary context switches over the window);
    per-round ratios to ``base``, without and with the server's CPU."""
    clients: dict[str, Any] = {}
    for key, rs in runs.items():
        # a figure is computed only for the runs it applies to (see Bench._run)
        clients[key] = {name: spread([r[name] for r in rs if name in r])
                        for name in ("cpu_per_100k", "msg_per_s", "cpu_with_server_per_100k",
                                     "cpu_per_read_us", "reads_per_s", "messages_per_read",
                                     "wakeups_per_s")}
        clients[key]["failed"] = sum(1 for r in rs if "failed" in r)
    ratios: dict[str, Any] = {}
    with_server: dict[str, Any] = {}
    base_by_round = {r["round"]: r for r in runs.get(base, []) if r.get("messages")}
    for key, rs in runs.items():
        mine = [r for r in rs if r.get("messages") and r["round"] in base_by_round]
        ratios[key] = spread([r["cpu_per_100k"] / base_by_round[r["round"]]["cpu_per_100k"]
                              for r in mine])
        with_server[key] = spread([
            r["cpu_with_server_per_100k"] / base_by_round[r["round"]]["cpu_per_100k"]
            for r in mine if "cpu_with_server_per_100k" in r])
    return {"clients": clients, "ratio_vs_json": ratios,
            "ratio_with_server_vs_json": with_server}


def _slope(points: list[tuple[float, float]]) -> float:
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else 0.0


_FRAME = re.compile(r"^(?P<name>.*) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")


def _short(path: str) -> str:
    for marker in ("site-packages/", "/src/", "lib/python3.11/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def _py_spy_top(raw: Path, limit: int = 25) -> dict[str, Any]:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks."""
    self_counts: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    where: dict[str, str] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_s)
        total += count
        frames = stack.split(";")
        keys = []
        for fr in frames:
            m = _FRAME.match(fr)
            name, file = (m.group("name"), m.group("file")) if m else (fr, "")
            key = f"{name} {file}"
            where[key] = f"{_short(file)}:{m.group('line') if m and m.group('line') else ''}"
            keys.append(key)
        self_counts[keys[-1]] += count
        for key in set(keys):
            incl[key] += count

    def top(counter: collections.Counter[str]) -> list[dict[str, Any]]:
        return [{"name": k.split(" ", 1)[0], "where": where[k], "samples": c,
                 "pct": 100 * c / total} for k, c in counter.most_common(limit)]

    return {"profiler": "py-spy", "samples": total, "self": top(self_counts),
            "inclusive": top(incl)}


def _cprofile_top(prof: Path, limit: int = 25) -> dict[str, Any]:
    import pstats

    st = pstats.Stats(str(prof))
    entries = st.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in entries.values())

    def top(index: int) -> list[dict[str, Any]]:
        rows = sorted(entries.items(), key=lambda kv: kv[1][index], reverse=True)[:limit]
        return [{"name": func[2], "where": f"{_short(func[0])}:{func[1]}",
                 "samples": v[1], "pct": 100 * v[index] / total} for func, v in rows]

    return {"profiler": "cProfile", "total_s": total, "self": top(2), "inclusive": top(3)}


def git_state(where: Path = ROOT) -> dict[str, Any]:
    """The commit the bench ran on (or the checkout ``where``) and whether the tree had
    uncommitted changes (the summary file this run writes is not one of them: it is written
    after this)."""
    def git(*argv: str) -> str:
        try:
            return subprocess.run(["git", *argv], capture_output=True, text=True, cwd=where,
                                  timeout=10).stdout.rstrip()
        except OSError:
            return ""

    dirty = [ln for ln in git("status", "--porcelain", "--untracked-files=no").splitlines()
             if ln.strip()]
    return {"commit": git("rev-parse", "HEAD") or "unknown",
            "subject": git("log", "-1", "--format=%s"), "dirty": bool(dirty),
            "dirty_files": [ln[3:] for ln in dirty][:20]}


def install_info(python: str) -> dict[str, Any]:
    """The checkout and commit of the install ``python`` runs (its ``streamer`` package,
    installed editable by that checkout's ./scripts/setup) and its distributions' versions."""
    probe = ("import json, streamer; from importlib import metadata\n"
             "v = {}\n"
             "for d in ('streamer-core', 'streamer-bybit', 'streamer-aggregate', 'trio', "
             "'msgspec', 'orjson'):\n"
             "    try: v[d] = metadata.version(d)\n"
             "    except metadata.PackageNotFoundError: pass\n"
             "print(json.dumps({'streamer': streamer.__file__, 'versions': v}))")
    out = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=60,
                         check=True).stdout
    info: dict[str, Any] = json.loads(out)
    info["python"] = python
    info["git"] = git_state(Path(info["streamer"]).parent)
    return info


def machine_info() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for dist in ("trio", "websockets", "msgspec", "orjson", "attrs", "cattrs", "pluggy",
                 "streamer-core", "streamer-bybit", "streamer-aggregate", "py-spy"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    try:
        openssl = subprocess.run(["openssl", "version"], capture_output=True, text=True,
                                 timeout=5).stdout.strip()
    except OSError:
        openssl = ""
    import ssl

    return {"git": git_state(), "nproc": os.cpu_count(), "cpu_model": model,
            "python": platform.python_version(),
            "platform": platform.platform(), "ssl": ssl.OPENSSL_VERSION, "openssl_cli": openssl,
            "versions": versions, "loadavg_start": os.getloadavg()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="short runs for development")
    p.add_argument("--only", default="", help=f"comma-separated subset of: {','.join(SECTIONS)}")
    p.add_argument("--repeat", type=int, default=None,
                   help="rounds of rates/curve/tls, medians reported (default 1 quick, "
                        "3 full)")
    p.add_argument("--rates", default=",".join(str(r) for r in RATES),
                   help="fixed rates of the rates section, msg/s (0: flat out)")
    p.add_argument("--pacings", default="batched,even",
                   help="the fake's pacing at each fixed rate: batched (every message due "
                        "at a millisecond wake-up, in shared writes), even (one message "
                        "every 1/rate s, each its own write); flat out has one")
    p.add_argument("--soak-rate", type=float, default=10000.0,
                   help="trade messages/s per category in the soak (linear and spot: twice "
                        "this in all; tickers extra)")
    p.add_argument("--soak-minutes", type=float, default=10.0)
    p.add_argument("--summary", default=None,
                   help="Markdown summary path (default bench/results/<date>-<sections>.md; "
                        "'' to skip)")
    p.add_argument("--clients", default=",".join(CLIENTS),
                   help="comma-separated subset of the rates section's clients (a narrow A/B "
                        "during development; the json client is the reference of the "
                        f"ratios): {','.join(CLIENTS)}")
    p.add_argument("--profile-pipeline", choices=["light", "redis", "realistic"],
                   default="light", help="the pipeline the profile section runs")
    p.add_argument("--profiler", choices=["py-spy", "cprofile"], default="py-spy")
    p.add_argument("--streamer-python", default=None,
                   help="the python of the install the streamer and floor children run on "
                        "(default this one): another checkout's .venv/bin/python measures "
                        "that checkout's product with this bench, fake and baselines "
                        "(bench_ab.py)")
    p.add_argument("--json", default="bench/results/pipeline.json",
                   help="write the results here ('' to skip)")
    args = p.parse_args()
    args.rates = [int(float(r)) for r in args.rates.split(",") if r.strip()]
    args.clients = [c.strip() for c in args.clients.split(",") if c.strip()]
    args.pacings = [c.strip() for c in args.pacings.split(",") if c.strip()]
    if not args.pacings or set(args.pacings) - {"batched", "even"}:
        p.error("--pacings: batched and/or even")
    unknown = set(args.clients) - set(CLIENTS)
    if unknown or "json" not in args.clients:
        p.error(f"--clients: unknown {sorted(unknown)} or json missing")
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    run_until_interrupted(Bench(args))


def run_until_interrupted(bench: Bench) -> None:
    """``bench.run()``; on Ctrl-C its children are stopped (by pid) and the exit is 130."""
    try:
        bench.run()
    except KeyboardInterrupt:
        bench.children.stop_all()
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
