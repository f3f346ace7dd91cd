"""End-to-end benchmark of the streamer pipeline against the fake Bybit.

    .venv/bin/python bench/bench_pipeline.py [--quick] [--only SECTIONS] [--repeat N]
                                             [--json bench/results/pipeline.json]

Sections (``--only throughput,rates,latency,close,scale,tls,profile``; default all):

- throughput: fake flat out, 50 symbols, 1 trade per message; streamer
  (bybit.linear -> klines.from_trades 1m 5m 1h 4h 1D -> counting sink) vs the bare
  `websockets` asyncio client + orjson and + json, for a fixed message count each.
- rates: 1,000 / 5,000 / 20,000 msg/s fixed, streamer vs the bare asyncio + json client.
- latency: 2,000 msg/s, updates = "every_trade": trade T (fake wall clock) -> kline update
  at the sink; p50 / p99 / p99.9 / max.
- close: waiter mode (100 ms), closed 1m (and longer) klines: sink arrival - (boundary +
  waiter); runs in the latency run, extended over 1 (quick) or 3 (full) minute boundaries.
- scale: 600 linear + 600 spot symbols, trades + tickers: RSS over 1 (quick) / 5 (full)
  minutes, growth per minute, connections, time until all subscribed.
- tls: flat out over wss:// (one TLS record per message) vs ws://: the source (its drain-all
  TLSStream) and the bare asyncio + orjson client.
- profile: py-spy (or cProfile) of the flat-out streamer run; top functions.

Every process (fake, streamer, baselines) is a child of this one, on 127.0.0.1, bounded in
time and message count, and ended on exit. CPU figures are each client's own getrusage over
its measured window (after a warm-up), so start-up and imports are not counted.
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
    Children,
    start_fake,
)

SECTIONS = ("throughput", "rates", "latency", "close", "scale", "tls", "profile")
INTERVALS = "1m,5m,1h,4h,1D"

#: Targets: cryptofeed and the older streamer as measured in docs/background.md.
CRYPTOFEED_VS_JSON = {1000: 0.74, 5000: 0.80, 20000: 0.90}
OLDER_STREAMER_VS_ORJSON = 1.6


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.quick: bool = args.quick
        self.children = Children()
        self.results: dict[str, Any] = {}
        self.rows: list[tuple[str, str, str, str]] = []  # section/metric, value, target, verdict

    # -- children ----------------------------------------------------------------------------

    def streamer(self, info: dict[str, Any], *extra: str, timeout: float = 300.0,
                 prefix: list[str] | None = None) -> dict[str, Any]:
        argv = [*(prefix or []), PYTHON, str(BENCH / "bench_e2e_streamer.py"),
                "--ws-linear", info["ws_linear"], "--rest", info["rest"],
                "--intervals", INTERVALS, "--timeout", str(timeout), *extra]
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
        argv = [PYTHON, str(BENCH / "bench_e2e_trio_baseline.py"), "--url", info["ws_linear"],
                "--timeout", str(timeout), *extra]
        return self._run(argv, "baseline-trio", timeout)

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
        if result.get("messages"):
            result["msg_per_s"] = result["messages"] / result["wall_s"]
            result["cpu_per_100k"] = result["cpu_s"] / result["messages"] * 100_000
        return result

    def row(self, metric: str, value: str, target: str = "", verdict: str = "") -> None:
        self.rows.append((metric, value, target, verdict))
        print(f"  {metric:<48} {value:<28} {target:<22} {verdict}", flush=True)

    # -- sections ------------------------------------------------------------------------------

    def throughput(self) -> None:
        n = 200_000 if self.quick else 1_000_000
        fake, info = start_fake(self.children, symbols=50, rate=0)
        runs: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
        try:
            for _ in range(self.args.repeat):
                runs["streamer"].append(self.streamer(info, "--count", str(n)))
                runs["orjson"].append(self.baseline(info, "orjson", "--count", str(n)))
                runs["json"].append(self.baseline(info, "json", "--count", str(n)))
                runs["trio"].append(self.trio_baseline(info, "--count", str(n)))
        finally:
            self.children.stop(fake)
        summary = self._summarise(runs)
        ratio_orjson = self._ratio(runs, "streamer", "orjson")
        ratio_json = self._ratio(runs, "streamer", "json")
        summary["ratio_cpu_vs_orjson"] = ratio_orjson
        summary["ratio_cpu_vs_json"] = ratio_json
        summary["messages"] = n
        self.results["throughput"] = {"summary": summary, "runs": runs}
        for k in ("streamer", "orjson", "json", "trio"):
            s = summary[k]
            label = {"streamer": "streamer", "orjson": "bare asyncio+orjson",
                     "json": "bare asyncio+json", "trio": "diag: bare trio sans-I/O+orjson"}[k]
            self.row(f"flat out: {label}",
                     f"{s['msg_per_s']:,.0f} msg/s, {s['cpu_per_100k']:.3f} CPU-s/100k")
        self.row("flat out: CPU/msg streamer / orjson baseline", f"{ratio_orjson:.2f}x",
                 "<= 1.0x", "met" if ratio_orjson <= 1.0 else "MISSED")
        self.row("flat out: CPU/msg streamer / json baseline", f"{ratio_json:.2f}x",
                 "(older streamer 1.17-1.24x)")

    def rates(self) -> None:
        duration = 6.0 if self.quick else 15.0
        out: dict[str, Any] = {}
        for rate in (1000, 5000, 20000):
            fake, info = start_fake(self.children, symbols=50, rate=rate)
            runs: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
            try:
                for _ in range(self.args.repeat):
                    runs["streamer"].append(
                        self.streamer(info, "--duration", str(duration), "--warmup", "2"))
                    runs["json"].append(
                        self.baseline(info, "json", "--duration", str(duration), "--warmup", "2"))
                    runs["trio"].append(
                        self.trio_baseline(info, "--duration", str(duration), "--warmup", "2"))
            finally:
                self.children.stop(fake)
            summary = self._summarise(runs)
            ratio = self._ratio(runs, "streamer", "json")
            summary["ratio_cpu_vs_json"] = ratio
            out[str(rate)] = {"summary": summary, "runs": runs}
            target = CRYPTOFEED_VS_JSON[rate]
            self.row(f"{rate:,} msg/s: streamer CPU-s/100k",
                     f"{summary['streamer']['cpu_per_100k']:.3f} "
                     f"({summary['streamer']['msg_per_s']:,.0f} msg/s)")
            self.row(f"{rate:,} msg/s: bare asyncio+json CPU-s/100k",
                     f"{summary['json']['cpu_per_100k']:.3f}")
            self.row(f"{rate:,} msg/s: diag: bare trio sans-I/O+orjson",
                     f"{summary['trio']['cpu_per_100k']:.3f}")
            self.row(f"{rate:,} msg/s: streamer / json baseline", f"{ratio:.2f}x",
                     f"<= {target:.2f}x (cryptofeed)", "met" if ratio <= target else "MISSED")
        self.results["rates"] = out

    def latency(self, with_close: bool, with_latency: bool) -> None:
        duration = 10.0 if self.quick else 60.0
        boundaries = (1 if self.quick else 2) if with_close else 0
        fake, info = start_fake(self.children, symbols=50, rate=2000, stamp=True)
        try:
            timeout = duration + 60 * boundaries + 120
            r = self.streamer(info, "--duration", str(duration), "--warmup", "2",
                              "--latency", "--updates", "every_trade",
                              "--close-boundaries", str(boundaries), timeout=timeout)
        finally:
            self.children.stop(fake)
        self.results["latency"] = r
        if with_latency:
            lat = r["latency_ms"]
            self.row("2,000 msg/s: trade -> kline update p50 / p99",
                     f"{lat['p50']:.2f} / {lat['p99']:.2f} ms", "p99 < 5 ms",
                     "met" if lat["p99"] < 5 else "MISSED")
            self.row("2,000 msg/s: p99.9 / max", f"{lat['p99.9']:.2f} / {lat['max']:.2f} ms")
            self.row("2,000 msg/s: samples; trades without update",
                     f"{r['latency_samples']:,}; {r['trades_without_kline']}")
        if with_close:
            d = r["close_delta_ms"]
            if not d:
                self.row("close: closed klines", "none seen", "", "MISSING")
                return
            self.row("close: boundary -> closed kline p50 / p99",
                     f"100 + {d['p50']:.2f} / 100 + {d['p99']:.2f} ms", "waiter + < 5 ms p99",
                     "met" if d["p99"] < 5 else "MISSED")
            self.row("close: max; klines; boundaries",
                     f"100 + {d['max']:.2f} ms; {r['close_samples']}; {r['close_boundaries']}")

    def scale(self) -> None:
        minutes = 1 if self.quick else 5
        rate = self.args.scale_rate
        fake, info = start_fake(self.children, symbols=600, rate=rate, tickers=True,
                                duration=minutes * 60 + 300)
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
        r["rss_mb_end"] = rss_end
        r["rss_growth_mb_per_min"] = slope
        self.results["scale"] = r
        ready = r["ready"] or {}
        conns = ready.get("connections", {})
        self.row(f"scale: RSS after {minutes} min", f"{rss_end:.0f} MB", "< 300 MB",
                 "met" if rss_end < 300 else "MISSED")
        self.row("scale: RSS growth (2nd half of run)", f"{slope:+.2f} MB/min", "flat")
        self.row("scale: connections; time to all subscribed",
                 f"{sum(conns.values())} ({conns}); {ready.get('subscribe_s', float('nan')):.1f} s")
        self.row("scale: messages/s received (trades+tickers)",
                 f"{(r['messages'] + r['tickers']) / r['wall_s']:,.0f} "
                 f"({r['cpu_s'] / r['wall_s'] * 100:.0f}% of a core)")

    def tls(self) -> None:
        n = 100_000 if self.quick else 500_000
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
        for key, label in (("ws", "ws:// streamer"), ("wss", "wss:// streamer"),
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
                r = self.streamer(info, "--count", str(n), prefix=prefix)
                top = _py_spy_top(raw)
                r["profile_file"] = str(raw)
            else:
                prof = out_dir / "pipeline_profile.prof"
                r = self.streamer(info, "--count", str(n), "--cprofile", str(prof))
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
        only = self.args.only.split(",") if self.args.only else list(SECTIONS)
        unknown = [s for s in only if s not in SECTIONS]
        if unknown:
            raise SystemExit(f"unknown section(s) {unknown}; pick from {', '.join(SECTIONS)}")
        self.results["machine"] = machine_info()
        self.results["mode"] = "quick" if self.quick else "full"
        self.results["repeat"] = self.args.repeat
        started = time.time()
        print(f"{'metric':<50} {'value':<28} {'target':<22} verdict", flush=True)
        try:
            for section in only:
                if section == "close" and "latency" in only:
                    continue  # measured in the latency run
                print(f"[{section}]", flush=True)
                t0 = time.time()
                try:
                    if section in ("latency", "close"):
                        self.latency(with_close="close" in only,
                                     with_latency="latency" in only)
                    else:
                        getattr(self, section)()
                except (TimeoutError, RuntimeError) as exc:
                    self.results.setdefault("failures", {})[section] = str(exc)
                    self.row(f"{section}: FAILED", str(exc).splitlines()[0][:60])
                self.results.setdefault("section_seconds", {})[section] = time.time() - t0
        finally:
            self.children.stop_all()
            self.results["machine"]["loadavg_end"] = os.getloadavg()
            self.results["seconds"] = time.time() - started
            keys = ("metric", "value", "target", "verdict")
            self.results["table"] = [dict(zip(keys, r, strict=True)) for r in self.rows]
            if self.args.json:
                path = Path(self.args.json)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(self.results, indent=1, default=str) + "\n")
                print(f"wrote {path}")


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

    return {"nproc": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
            "platform": platform.platform(), "ssl": ssl.OPENSSL_VERSION, "openssl_cli": openssl,
            "versions": versions, "loadavg_start": os.getloadavg()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="short runs (~4 min in all) for development; full mode ~20 min")
    p.add_argument("--only", default="", help=f"comma-separated subset of: {','.join(SECTIONS)}")
    p.add_argument("--repeat", type=int, default=None,
                   help="repeats of throughput/rates/tls, medians reported (default 1 quick, "
                        "2 full)")
    p.add_argument("--scale-rate", type=float, default=2000.0,
                   help="trade messages/s per category in the scale run (tickers extra)")
    p.add_argument("--profiler", choices=["py-spy", "cprofile"], default="py-spy")
    p.add_argument("--json", default="bench/results/pipeline.json",
                   help="write the results here ('' to skip)")
    args = p.parse_args()
    if args.repeat is None:
        args.repeat = 1 if args.quick else 2
    bench = Bench(args)
    try:
        bench.run()
    except KeyboardInterrupt:
        bench.children.stop_all()
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
