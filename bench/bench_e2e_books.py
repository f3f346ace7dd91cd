"""End-to-end order-book bench: the streamer's book stream over real sockets against the fake
Bybit, next to a bare asyncio + json client and cryptofeed parsing the same messages in the
same run.

    .venv/bin/python bench/bench_e2e_books.py [--repeat 3] [--rss-minutes 10] [--quick]
                                              [--only cpu,rss,profile]

Sections:

- cpu: 50 symbols, books filled to their whole depth, one row each: depth 50 at Bybit's own
  push rate (every 20 ms: 2,500 msg/s), depth 200 (every 100 ms: 500 msg/s), depth 1000
  (every 200 ms: 250 msg/s), and depth 50 flat out. Each round runs every client once, the
  order rotated from round to round:

  - streamer: ``bybit.linear`` (``streams = ["orderbook"]``, ``book_depth``, the source's
    default ``coalesce_ms``: its checks and book upkeep) -> ``bench.count`` (every ``Book``
    event), the tap counting them inline (``bench_e2e_streamer.py --book-depth``);
  - streamer, coalesce_ms 0: the same, and the sink times every book: arrival - the
    microsecond the fake built the message (``--stamp`` puts it in ``seq``); paced rows only
    (flat out, latency is the queue);
  - bare asyncio ``websockets`` + json: subscribe, ``json.loads`` each message (the
    reference of every ratio);
  - cryptofeed: its Bybit feed, L2_BOOK, a counting callback (its release from the package
    index in the bench's own virtual environment; see bench_e2e_cryptofeed.py).

- rss: 600 symbols at depth 1000 at Bybit's rate (3,000 msg/s), the streamer with its
  default ``coalesce_ms``, ``--rss-minutes`` (10): RSS every 30 s, start / end / max and the
  slope.
- profile: the streamer of the depth-50 row under py-spy: where its CPU per message goes.

Each figure is the median of ``--repeat`` rounds (min-max); ratios are per round. Writes
``bench/results/<UTC date>-<HHMM>-books-e2e.md`` (commit, machine, load before / after each
row, every setting) and the raw JSON next to it (git-ignored).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_e2e_common import BENCH, PYTHON, ROOT, start_fake
from bench_pipeline import (
    CRYPTOFEED,
    Bench,
    _py_spy_top,
    _slope,
    ensure_cryptofeed,
    fmt_spread,
    machine_info,
    run_until_interrupted,
    spread,
)

SYMBOLS = 50
#: Bybit's push interval per depth (ms, book_depths.py).
PUSH_MS = {50: 20, 200: 100, 1000: 200}
#: (row, depth, the fake's --book-rate: 0 = flat out). The paced rows push each book once
#: every Bybit interval, the 50 books spread evenly over it (round-robin, every push due at
#: a millisecond wake-up): the fake's own burst mode builds all 50 messages, stamping each,
#: and writes them after the last, which would count its build time (~1.5 ms for 50 full
#: books) as the streamer's latency.
ROWS = (("depth 50, Bybit's rate", 50, SYMBOLS * 1000 / PUSH_MS[50]),
        ("depth 200, Bybit's rate", 200, SYMBOLS * 1000 / PUSH_MS[200]),
        ("depth 1000, Bybit's rate", 1000, SYMBOLS * 1000 / PUSH_MS[1000]),
        ("depth 50, flat out", 50, 0.0))
#: book_stale_s of the flat-out row: a flat-out fake starved of CPU on a shared machine
#: falls silent for longer than 3 push intervals (65 ms at depth 50), and the resubscribes
#: that follow would be measured instead of the books.
FLAT_OUT_STALE_S = 10.0
CLIENTS = {
    "streamer": "streamer, coalesce_ms default (5)",
    "streamer_c0": "streamer, coalesce_ms 0, latency timed",
    "json": "bare asyncio websockets + json",
    "json_lat": "bare asyncio websockets + json, latency timed",
    "cryptofeed": "cryptofeed (Bybit feed, L2_BOOK)",
    "trades_c0": "reference: streamer trades, coalesce_ms 0, latency timed",
}
CLIENT_SETTINGS = {
    "streamer": "bybit.linear (50 symbols, streams orderbook, book_depth of the row, default "
                "coalesce_ms and book_stale_s) -> bench.count (every Book event, queue_size "
                "100000); bench.tap counts the Book events inline",
    "streamer_c0": "as streamer, coalesce_ms 0; the sink takes each Book's latency: arrival "
                   "wall time - seq (the fake's build microsecond)",
    "json": "websockets asyncio client (compression off, no pings, max_size None), one "
            "subscribe of the 50 orderbook.<depth> topics, json.loads per message",
    "json_lat": "as json, and each book's wall-clock arrival (once parsed) - its seq: the "
                "latency of the same messages without the streamer (paced rows only)",
    "cryptofeed": f"{CRYPTOFEED} Bybit feed, L2_BOOK channel (its subscribe of "
                  "orderbook.200 rewritten to the row's depth), a counting callback, uvloop; "
                  "max_depth 0, cross_check off (its defaults)",
    "trades_c0": "depth-50 row only, on a second fake (`--symbols 50 --rate 2500 --stamp "
                 "--no-tickers`, batched pacing, idle while nobody subscribes): the trade "
                 "bench's latency pipeline (bybit.linear trades -> klines.from_trades every "
                 "trade -> bench.count, which also takes the trades), coalesce_ms 0, at the "
                 "same message rate: the machine's latency tail without books, in the same "
                 "rounds",
}
P99_TARGET_MS = 2.0
RATIO_TARGET = 1.0


#: The cause of a py-spy sample: the first frame from the leaf (the running function) up
#: whose file matches. Functions in C (msgspec, json, the socket) show as their caller.
#: Samples in trio's epoll_wait are left out: ``py-spy --nonblocking`` cannot tell a thread
#: asleep in it from one running in it (the kernel's side is the run's system CPU).
EPOLL = "epoll_wait"
CAUSES = (
    ("_io_epoll.py", EPOLL),
    ("streamer/book.py", "book upkeep (streamer.book: float(), bisect, insort)"),
    ("book_keeper.py", "book checks, msgspec decode of data, Book event (BookKeeper)"),
    ("streamer_bybit/decode.py", "message envelope decode and dispatch (MessageDecoder)"),
    ("streamer/net/", "WebSocket transport (socket read, frame parse)"),
    ("streamer_bybit/connection.py", "the connection's reader loop, coalescing wait"),
    ("bench_e2e_streamer.py", "the bench's counting tap and sink"),
    ("streamer/_", "routing to the sink (core: outlet, inbox, route)"),
    ("streamer_bybit/", "the source's other parts (outlet, worker)"),
    ("trio/", "trio's scheduler, timers, checkpoints"),
)
#: Stacks of the process's start-up (imports, config, pipeline build): left out (py-spy
#: attaches after it, this is for a profile of a whole run).
STARTUP = ("_find_and_load", "load_plugin_manager", "load_config_text", "Pipeline.__init__")


def profile_causes(raw: Path) -> tuple[dict[str, float], dict[str, Any]]:
    """Per cause, the share (%) of py-spy's samples after start-up; and its top functions
    over the same samples (``_py_spy_top`` of a copy without the start-up stacks)."""
    kept: list[str] = []
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or any(f in stack for f in STARTUP):
            continue
        kept.append(line)
        frames = stack.split(";")[::-1]
        cause = next((c for f in frames for pattern, c in CAUSES if pattern in f), "other")
        counts[cause] += int(n)
    total = sum(counts.values()) or 1
    filtered = raw.with_suffix(".run.txt")
    filtered.write_text("\n".join(kept) + "\n")
    return ({c: 100 * n / total for c, n in counts.most_common()},
            _py_spy_top(filtered, limit=15))


class BookBench(Bench):
    """bench_pipeline's children and rounds, with the book clients."""

    depth = 50
    #: The trade fake of the depth-50 row (the latency reference), else None.
    trade_info: dict[str, Any] | None = None

    def client(self, key: str, info: dict[str, Any], window: list[str],
               timeout: float = 300.0) -> dict[str, Any] | None:
        depth = ["--book-depth", str(self.depth)]
        if key == "streamer":
            stale = (["--book-stale-s", str(FLAT_OUT_STALE_S)] if "--count" in window
                     else [])
            return self.streamer(info, *window, *depth, *stale, timeout=timeout)
        if key == "streamer_c0":
            if "--duration" not in window:
                return None  # flat out: the latency is the queue's
            return self.streamer(info, *window, *depth, "--coalesce-ms", "0", "--latency",
                                 timeout=timeout)
        if key == "json":
            return self.baseline(info, "json", *window, *depth, timeout=timeout)
        if key == "json_lat":
            if "--duration" not in window:
                return None
            return self.baseline(info, "json", *window, *depth, "--latency", timeout=timeout)
        if key == "cryptofeed":
            return self.cryptofeed(info, *window, *depth, timeout=timeout)
        if key == "trades_c0":
            if self.trade_info is None:
                return None
            return self.streamer(self.trade_info, *window, "--latency", "--updates",
                                 "every_trade", "--coalesce-ms", "0", timeout=timeout)
        raise ValueError(key)

    # -- sections ----------------------------------------------------------------------------

    def cpu(self) -> None:
        self.cryptofeed_python = ensure_cryptofeed(print)
        if self.cryptofeed_python is None:
            self.results.setdefault("notes", []).append(
                f"cryptofeed left out: {CRYPTOFEED} could not be installed")
        keys = [k for k in CLIENTS if k != "cryptofeed" or self.cryptofeed_python]
        duration = "4" if self.quick else "8"
        count = "30000" if self.quick else "100000"
        out: dict[str, Any] = {}
        for i, (label, depth, rate) in enumerate(ROWS):
            self.depth = depth
            window = (["--count", count] if rate == 0 else ["--duration", duration]) + [
                "--warmup", "2"]
            extra = ["--no-trades", "--full-books", "--book-rate", f"{rate:g}"]
            fake, info = start_fake(self.children, symbols=SYMBOLS, rate=0, stamp=True,
                                    extra=extra)
            trade_fake = None
            if i == 0:
                trade_fake, self.trade_info = start_fake(self.children, symbols=SYMBOLS,
                                                         rate=rate, stamp=True)
            try:
                summary, runs = self.block(fake, info, keys, window, offset=i)
            finally:
                if trade_fake is not None:
                    self.children.stop(trade_fake)
                self.trade_info = None
            for key in ("streamer_c0", "json_lat", "trades_c0"):
                summary[f"p99_ms_{key}"] = spread([r["latency_ms"]["p99"] for r in runs[key]
                                                   if r.get("latency_ms")])
            summary["settings"] = {"depth": depth, "book_rate": rate, "symbols": SYMBOLS,
                                   "fake": " ".join([*extra, "--stamp"]),
                                   "window": " ".join(window), "rounds": self.args.repeat,
                                   "clients": keys}
            out[label] = {"summary": summary, "runs": runs}
            self.book_rows(label, depth, rate, summary, runs)
        self.results["cpu"] = out

    def book_rows(self, label: str, depth: int, rate: float,
                  summary: dict[str, Any], runs: dict[str, list[dict[str, Any]]]) -> None:
        la = summary["loadavg"]
        nominal = "flat out" if rate == 0 else f"{rate:,.0f} msg/s nominal"
        self.row(f"{label}: load average before / after",
                 f"{la[0][0]:.2f} / {la[1][0]:.2f} (1 min)", nominal)
        for key in summary["clients"]:
            s = summary["clients"][key]
            if not s["cpu_per_100k"]["n"]:
                continue
            us = {k: v * 10 if isinstance(v, float) else v
                  for k, v in s["cpu_per_100k"].items()}  # CPU-s/100k -> us/message
            self.row(f"{label}: {CLIENTS[key]}", f"{fmt_spread(us, '.2f')} us CPU/msg",
                     f"{s['msg_per_s']['median']:,.0f} msg/s")
        ratios = summary["ratio_vs_json"]
        for key in summary["clients"]:
            if key in ("json", "json_lat", "trades_c0") or not ratios[key]["n"]:
                continue
            target = verdict = ""
            if key == "streamer":
                target = f"<= {RATIO_TARGET:.1f}x"
                verdict = "met" if ratios[key]["median"] <= RATIO_TARGET else "MISSED"
            self.row(f"{label}: {CLIENTS[key]} / json", fmt_spread(ratios[key], ".2f", "x"),
                     target, verdict)
        for key, what in (("streamer_c0", "books"), ("json_lat", "books, bare json client"),
                          ("trades_c0", "trades, streamer (reference)")):
            p99 = summary[f"p99_ms_{key}"]
            if not p99["n"]:
                continue
            lat = [r["latency_ms"] for r in runs[key] if r.get("latency_ms")]
            target, verdict = "", ""
            if key == "streamer_c0":
                target = f"< {P99_TARGET_MS:g} ms"
                verdict = "met" if p99["median"] < P99_TARGET_MS else "MISSED"
            self.row(f"{label}: {what}: frame -> sink p99, coalesce_ms 0",
                     fmt_spread(p99, ".2f", " ms"), target, verdict)
            self.row(f"{label}: {what}: frame -> sink p50 / p99.9 / max (median of rounds)",
                     " / ".join(f"{spread([x[k] for x in lat])['median']:.2f}"
                                for k in ("p50", "p99.9", "max")) + " ms",
                     f"{sum(r['latency_samples'] for r in runs[key])} samples")
        faults: collections.Counter[str] = collections.Counter()
        for r in runs["streamer"] + runs["streamer_c0"]:
            counters = r.get("metrics", {}).get("linear", {})
            for name in ("book_gaps", "book_crossed", "book_overfull", "book_stale",
                         "book_resyncs"):
                faults[name] += counters.get(name, 0)
        self.row(f"{label}: streamer book faults over all its runs",
                 ", ".join(f"{k} {v}" for k, v in faults.items()) or "none counted",
                 "all 0", "met" if not any(faults.values()) else "CHECK")

    def rss(self) -> None:
        minutes = 1.0 if self.quick else self.args.rss_minutes
        fake, info = start_fake(self.children, symbols=600, rate=0, duration=minutes * 60 + 300,
                                extra=["--no-trades", "--full-books", "--book-rate",
                                       f"{600 * 1000 / PUSH_MS[1000]:g}"])
        load0 = os.getloadavg()
        try:
            r = self.streamer(info, "--symbols", "600", "--book-depth", "1000", "--duration",
                              str(minutes * 60), "--warmup", "0", "--progress", "30",
                              timeout=minutes * 60 + 180)
        finally:
            self.children.stop(fake)
        ready = r["ready"] or {}
        samples = [(0.0, ready.get("rss_kib", 0) / 1024)] + [
            (p["t"], p["rss_kib"] / 1024) for p in r["progress"]]
        samples.append((samples[-1][0] + 1, r["rss_kib"] / 1024))
        mbs = [mb for _, mb in samples[1:]]
        half = [s for s in samples[1:] if s[0] >= samples[-1][0] / 2]
        r["rss_mb_samples"] = [(round(t), round(mb, 1)) for t, mb in samples]
        r["slope_mb_per_min"] = _slope(samples[1:]) * 60
        r["slope_2nd_half_mb_per_min"] = _slope(half) * 60 if len(half) >= 2 else float("nan")
        r["loadavg"] = [load0, os.getloadavg()]
        self.results["rss"] = r
        first, end = mbs[0], mbs[-1]
        change = (end - first) / first * 100
        self.row("rss 600 x depth 1000: load average before / after",
                 f"{load0[0]:.2f} / {os.getloadavg()[0]:.2f} (1 min)")
        self.row("rss 600 x depth 1000: at subscribe; first sample (30 s); end; max",
                 f"{samples[0][1]:.0f}; {first:.0f}; {end:.0f} ({change:+.1f}%); "
                 f"{max(mbs):.0f} MB", "flat: end within 10% of 30 s",
                 "met" if abs(change) <= 10 else "MISSED")
        self.row("rss 600 x depth 1000: slope over the run; over its 2nd half",
                 f"{r['slope_mb_per_min']:+.2f}; {r['slope_2nd_half_mb_per_min']:+.2f} MB/min")
        self.row("rss 600 x depth 1000: samples (s, MB)",
                 " ".join(f"{t}:{mb:.0f}" for t, mb in r["rss_mb_samples"]))
        conns = ready.get("connections", {})
        self.row("rss 600 x depth 1000: messages/s; CPU; connections; time to subscribed",
                 f"{r['messages'] / r['wall_s']:,.0f}; {r['cpu_s'] / r['wall_s'] * 100:.0f}% "
                 f"of a core; {sum(conns.values())}; {ready.get('subscribe_s', 0):.1f} s",
                 "3,000 msg/s sent")
        self.row("rss 600 x depth 1000: the collector's pauses (count, total, longest)",
                 "; ".join(f"{gen} {g['count']}, {g['total_ms'] / 1000:.1f} s, "
                           f"{g['max_ms']:.0f} ms" for gen, g in r["gc"].items()) or "none",
                 f"over {r['wall_s']:.0f} s")
        counters = r["metrics"].get("linear", {})
        self.row("rss 600 x depth 1000: book faults, reconnects",
                 ", ".join(f"{k} {counters[k]}" for k in
                           ("book_stale", "book_resyncs", "book_dropped_deltas", "book_gaps",
                            "reconnects") if k in counters) or "none counted",
                 "all 0", "met" if not counters.get("book_stale") and not counters.get(
                     "reconnects") else "MISSED")

    def profile(self) -> None:
        """Each cpu row's streamer (flat out too) under py-spy: the share of its samples by
        cause, the process's start-up left out."""
        py_spy = shutil.which("py-spy") or str(Path(PYTHON).parent / "py-spy")
        if not os.path.exists(py_spy):
            self.row("profile: skipped", "py-spy not installed (pip install py-spy)")
            return
        out: dict[str, Any] = {}
        seconds = 6 if self.quick else 40
        for label, depth, rate in ROWS[:1] + ROWS[2:]:
            fake, info = start_fake(self.children, symbols=SYMBOLS, rate=0,
                                    extra=["--no-trades", "--full-books", "--book-rate",
                                           f"{rate:g}"])
            raw = self.out_dir / f"books_profile_{depth}_{rate:g}.txt"
            stale = ["--book-stale-s", str(FLAT_OUT_STALE_S)] if rate == 0 else []
            try:
                r = self.profiled(py_spy, raw, info, seconds, "--book-depth", str(depth),
                                  *stale)
            finally:
                self.children.stop(fake)
            r["causes"], r["top"] = profile_causes(raw)
            out[label] = r
            n = r["messages"]
            us, user, system = (r[k] / n * 1e6 for k in ("cpu_s", "user_s", "sys_s"))
            epoll = r["causes"].pop(EPOLL, 0.0)
            busy = 100.0 - epoll
            self.row(f"profile {label}: streamer under py-spy",
                     f"{us:.2f} us CPU/msg = {user:.2f} user + {system:.2f} system, "
                     f"{n / r['wall_s']:,.0f} msg/s, {n / r['reads']:.1f} msg/read",
                     f"{r['top']['samples']} samples, {epoll:.0f}% of them in epoll_wait "
                     "(left out)")
            self.row(f"profile {label}: the kernel (system CPU: socket reads, epoll, "
                     "wake-ups)", f"{system:.2f} us/msg")
            for cause, pct in r["causes"].items():
                self.row(f"profile {label}: {cause}",
                         f"{pct / busy * 100:.1f}% of user = {user * pct / busy:.2f} us/msg")
            self.row(f"profile {label}: top functions (self, share of the samples left)",
                     "; ".join([f"{e['name']} ({e['where']}) {e['pct'] / busy * 100:.1f}%"
                                for e in r["top"]["self"]
                                if not e["name"].endswith("get_events")][:12]))
        self.results["profile"] = out

    def profiled(self, py_spy: str, raw: Path, info: dict[str, Any], seconds: int,
                 *extra: str) -> dict[str, Any]:
        """The streamer client, py-spy attached for its measured window only (after the
        subscribe's snapshots and a warm-up, so neither the start-up nor the snapshots are
        in the profile)."""
        argv = [self.streamer_python, str(BENCH / "bench_e2e_streamer.py"), "--ws-linear",
                info["ws_linear"], "--rest", info["rest"], "--duration", str(seconds),
                "--warmup", "2", "--timeout", str(seconds + 120), *extra]
        child = self.children.start(argv, name="streamer")
        try:
            child.read_json(60, want="ready")
            time.sleep(3)
            subprocess.run([py_spy, "record", "--pid", str(child.pid), "-r", "250",
                            "--nonblocking", "-F", "-f", "raw", "-o", str(raw),
                            "--duration", str(seconds - 3)], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=seconds + 60)
            result = child.read_json(seconds + 60, want="result")
            child.wait(15)
        finally:
            self.children.stop(child)
        return result

    # -- the run -------------------------------------------------------------------------------

    def run(self) -> None:
        only = self.args.only.split(",")
        self.out_dir = ROOT / "bench" / "results"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        started = time.time()
        stamp = time.strftime("%Y-%m-%d-%H%M", time.gmtime(started))
        self.results.update(machine=machine_info(), repeat=self.args.repeat, sections=only,
                            started_utc=time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()))
        try:
            for section in only:
                la = [os.getloadavg()]
                print(f"[{section}] load average {la[0]}", flush=True)
                try:
                    getattr(self, section)()
                except (TimeoutError, RuntimeError) as exc:
                    self.results.setdefault("failures", {})[section] = str(exc)
                    self.row(f"{section}: FAILED", str(exc).splitlines()[0][:80])
                la.append(os.getloadavg())
                self.results.setdefault("section_loadavg", {})[section] = la
        finally:
            self.children.stop_all()
            self.results["machine"]["loadavg_end"] = os.getloadavg()
            self.results["seconds"] = time.time() - started
            suffix = "-quick" if self.quick else ""
            raw = self.out_dir / f"{stamp}-books-e2e{suffix}.json"
            raw.write_text(json.dumps(self.results, indent=1, default=str) + "\n")
            summary = self.out_dir / f"{stamp}-books-e2e{suffix}.md"
            summary.write_text(self.markdown())
            print(f"wrote {summary} and {raw}")

    def markdown(self) -> str:
        run = (f"{self.results['repeat']} rounds (order rotated each round); "
               f"{self.results['seconds']:.0f} s in all.  ")
        lines = [
            *self.head_lines("bench_e2e_books.py", run),
            "",
            "us CPU/msg: median (min-max, n rounds) of the client's own CPU (getrusage, all "
            "threads) per book message over its measured window (after a 2 s warm-up, so the "
            "subscribe snapshots are not in it); / json: per-round ratio to the bare asyncio "
            "websockets + json client, which ran on the same fake in the same round. Latency: "
            "the sink's arrival wall time - the wall-clock microsecond the fake built the "
            "message (in the message's seq, `--stamp`), every book of the window.",
            "",
            "Settings:",
            "",
        ]
        for label, block in self.results.get("cpu", {}).items():
            st = block["summary"]["settings"]
            rate = (f"each book every {PUSH_MS[st['depth']]} ms (Bybit's interval), the "
                    f"{st['symbols']} spread evenly over it" if st["book_rate"]
                    else f"flat out; the streamer with book_stale_s {FLAT_OUT_STALE_S:g}")
            lines.append(f"- {label}: fake `--symbols {st['symbols']} {st['fake']}`, {rate}; "
                         f"window `{st['window']}`; {st['rounds']} rounds")
        for key, text in CLIENT_SETTINGS.items():
            lines.append(f"- {CLIENTS[key]}: {text}")
        if "rss" in self.results:
            lines.append("- rss: fake `--symbols 600 --no-trades --full-books --book-rate "
                         "3000`: each book every 200 ms (Bybit's interval at depth 1000), "
                         "spread evenly; the streamer "
                         "client (default coalesce_ms) on 600 symbols at depth 1000, RSS "
                         "(VmRSS) at subscribe and every 30 s; slope: least squares")
        if "profile" in self.results:
            lines.append("- profile: the fake as in the cpu row; the streamer client (default "
                         "coalesce_ms) for 40 s after a 2 s warm-up, `py-spy record --pid -r "
                         "250 --nonblocking -F` attached 3 s after it is subscribed for 37 s "
                         "(no start-up, no subscribe snapshots). Cause of a sample: the first "
                         "frame from the leaf up in a known file (C code: msgspec, float(), "
                         "the socket, shows as its caller). Samples in trio's epoll_wait are "
                         "left out (py-spy --nonblocking cannot tell sleeping in it from "
                         "running in it): the kernel's part is the run's system CPU "
                         "(getrusage), and each cause's share of the other samples times the "
                         "run's user CPU per message is that cause's user CPU per message")
        for note in self.results.get("notes", []):
            lines.append(f"- note: {note}")
        lines += ["", *self.table_lines()]
        return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="short runs for development")
    p.add_argument("--only", default="cpu,rss,profile", help="sections: cpu,rss,profile")
    p.add_argument("--repeat", type=int, default=3, help="rounds of the cpu section")
    p.add_argument("--rss-minutes", type=float, default=10.0)
    args = p.parse_args()
    unknown = set(args.only.split(",")) - {"cpu", "rss", "profile"}
    if unknown:
        p.error(f"unknown sections {sorted(unknown)}")
    args.streamer_python = None
    run_until_interrupted(BookBench(args))


if __name__ == "__main__":
    main()
