"""Bench: what 100 viewers of the web view cost the pipeline, and a viewer that stops reading.

The simulator (``python -m streamer_bybit.simulator``, its own process) sends ``--rate``
trade messages per second (one trade each) over ``--symbols`` linear symbols, with tickers.
The streamer (``bench_e2e_streamer.py --pipeline web``, its own process) runs
``bybit.linear (trades, tickers) -> klines.from_trades (1m 5m 1h 4h 1D, throttled updates)
-> websocket (web = true, login)`` and measures its own CPU over a window after a warm-up.
The viewers (``bench_web_viewer_clients.py``, a third process, its CPU not counted) speak to
the sink as the page does: login, batches with the latest ticker per symbol
(``{"op": "batch", "latest": ["ticker"]}``), every symbol's tickers (three fields) and
klines, then one symbol's klines and trades (three fields of each trade), the status
pushed once a second
(``{"op": "status", "push": true}``). ``--batch-interval`` sets the sink's batch_interval.

Rounds: the streamer without viewers and with ``--viewers``, the order rotated each round;
the figure is the median CPU per message of each, and their ratio (target: <= 1.10).
Then one run with ``--viewers`` of which one stops reading once subscribed: it must be cut
(``slow_client_disconnects``) while every other viewer receives every trade of its symbol
(counted per whole second of the window against what the source emitted).

Writes ``bench/results/<UTC date>-web-viewers.md`` (commit, machine, load, settings, table).

    .venv/bin/python bench/bench_web_viewers.py              # ~5 min
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import attrs
from bench_e2e_common import BENCH, PYTHON, ROOT, Children, start_fake
from bench_e2e_streamer import WEB_KEY_ENV
from bench_pipeline import machine_info

from streamer_websocket.config import WebSocketConfig

#: The sink's default batch_interval.
DEFAULT_INTERVAL: float = attrs.fields(WebSocketConfig).batch_interval.default


def streamer_run(children: Children, info: dict[str, Any], args: argparse.Namespace,
                 viewers: int, stalled: int, duration: float) -> dict[str, Any]:
    env = dict(os.environ)
    env[WEB_KEY_ENV] = args.key
    argv = [PYTHON, str(BENCH / "bench_e2e_streamer.py"), "--pipeline", "web",
            "--ws-linear", info["ws_linear"], "--rest", info["rest"],
            "--symbols", str(args.symbols), "--streams", "trades,tickers",
            "--duration", str(duration), "--warmup", str(args.warmup),
            "--viewers", str(viewers), "--stalled", str(stalled)]
    if args.batch_interval is not None:
        argv += ["--batch-interval", str(args.batch_interval)]
    child = children.start(argv, env, name=f"streamer ({viewers} viewers)")
    try:
        result = child.read_json(timeout=duration + 120, want="result")
    finally:
        children.stop(child)
    result["us_per_msg"] = result["cpu_s"] / result["messages"] * 1e6
    result["msg_per_s"] = result["messages"] / result["wall_s"]
    result["cpu_percent"] = 100 * result["cpu_s"] / result["wall_s"]
    sent = result.get("ws_window", {})
    per_viewer_s = result["wall_s"] * max(viewers, 1)
    result["writes_per_viewer_s"] = sent.get("batched_writes", 0) / per_viewer_s
    result["messages_per_viewer_s"] = sent.get("sent_messages", 0) / per_viewer_s
    result["kib_per_viewer_s"] = sent.get("batched_bytes", 0) / per_viewer_s / 1024
    result["loadavg_end"] = os.getloadavg()
    return result


def fmt_runs(runs: list[dict[str, Any]], key: str = "us_per_msg", spec: str = ".1f") -> str:
    values = [r[key] for r in runs]
    return (f"{statistics.median(values):{spec}} ({min(values):{spec}}-{max(values):{spec}})")


def row(viewers: int, runs: list[dict[str, Any]]) -> str:
    sends = (f"{fmt_runs(runs, 'writes_per_viewer_s')} | "
             f"{fmt_runs(runs, 'messages_per_viewer_s')} | "
             f"{fmt_runs(runs, 'kib_per_viewer_s')}") if viewers else "- | - | -"
    return (f"| {viewers} | {fmt_runs(runs)} | {fmt_runs(runs, 'msg_per_s', ',.0f')} | "
            f"{fmt_runs(runs, 'cpu_percent', '.0f')} | {sends} | {len(runs)} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=int, default=20_000)
    p.add_argument("--symbols", type=int, default=50)
    p.add_argument("--viewers", type=int, default=100)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--stall-duration", type=float, default=40.0)
    p.add_argument("--batch-interval", type=float, default=None,
                   help="the sink's batch_interval (default: the sink's default)")
    p.add_argument("--out", default=None, help="summary file (default bench/results/...)")
    args = p.parse_args()
    args.key = secrets.token_urlsafe(24)
    started = time.time()
    machine = machine_info()
    children = Children()
    runs: dict[int, list[dict[str, Any]]] = {0: [], args.viewers: []}
    ratios: list[float] = []
    try:
        _, info = start_fake(children, symbols=args.symbols, rate=args.rate, tickers=True)
        for round_index in range(args.rounds):
            order = [0, args.viewers] if round_index % 2 == 0 else [args.viewers, 0]
            by_count = {}
            for viewers in order:
                r = streamer_run(children, info, args, viewers, 0, args.duration)
                runs[viewers].append(r)
                by_count[viewers] = r
                print(f"round {round_index + 1} viewers {viewers}: {r['us_per_msg']:.2f} "
                      f"us/msg, {r['messages'] / r['wall_s']:.0f} msg/s, load "
                      f"{r['loadavg_end'][0]:.2f}", flush=True)
            ratios.append(by_count[args.viewers]["us_per_msg"] / by_count[0]["us_per_msg"])
        stall = streamer_run(children, info, args, args.viewers, 1, args.stall_duration)
        print(f"stall run: {stall['viewers']}, ws metrics {stall['ws_metrics']}", flush=True)
    finally:
        children.stop_all()
    machine["loadavg_end"] = os.getloadavg()
    median_none = statistics.median(r["us_per_msg"] for r in runs[0])
    median_viewers = statistics.median(r["us_per_msg"] for r in runs[args.viewers])
    summary = write_summary(args, machine, started, runs, ratios, median_none, median_viewers,
                            stall)
    print(summary)


def short_of_rate(args: argparse.Namespace, runs: dict[int, list[dict[str, Any]]]
                  ) -> list[str]:
    """A note when runs received under 95% of the rate: the simulator, the streamer and the
    viewers (three processes) did not all get the CPU they needed."""
    short = {v: [r for r in rs if r["msg_per_s"] < 0.95 * args.rate] for v, rs in runs.items()}
    if not any(short.values()):
        return []
    counts = ", ".join(f"{len(rs)} of the {len(runs[v])} runs with {v} viewers"
                       for v, rs in short.items() if rs)
    return [f"Short of the rate: {counts} received under 95% of {args.rate:,} msg/s (the "
            "simulator, the streamer and the viewers are three processes on this machine's "
            "cores): fewer messages share the viewers' per-second cost, so those runs' CPU "
            "per message is higher than at the full rate.", ""]


def write_summary(args: argparse.Namespace, machine: dict[str, Any], started: float,
                  runs: dict[int, list[dict[str, Any]]], ratios: list[float],
                  median_none: float, median_viewers: float, stall: dict[str, Any]) -> str:
    git = machine["git"]
    stamp = time.strftime("%Y-%m-%d-%H%M", time.gmtime(started))
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / f"{stamp}-web-viewers.md"
    viewers = stall["viewers"]
    ws = stall["ws_metrics"]
    load0, load1 = machine["loadavg_start"], machine["loadavg_end"]
    lines = [
        f"# Web view: {args.viewers} viewers at {args.rate:,} trade msg/s "
        f"({time.strftime('%Y-%m-%d %H:%M', time.gmtime(started))} UTC)", "",
        f"Command: `python bench/bench_web_viewers.py {' '.join(sys.argv[1:])}`".rstrip(), "",
        f"Commit: {git['commit'][:7]} ({git['subject']}){', dirty tree' if git['dirty'] else ''}."
        f"", "",
        f"Machine: {machine['cpu_model']}, {machine['nproc']} cores, Python "
        f"{machine['python']}, {machine['platform']}. Load average (1, 5, 15 min) before "
        f"{tuple(round(x, 2) for x in load0)}, after {tuple(round(x, 2) for x in load1)} "
        "(the machine is shared: other work ran meanwhile).", "",
        f"Settings: simulator at {args.rate:,} trade msg/s (1 trade each, batched pacing) "
        f"over {args.symbols} linear symbols, with tickers; pipeline bybit.linear (trades, "
        "tickers) -> klines.from_trades (1m 5m 1h 4h 1D, updates throttled) -> websocket "
        "(web = true, login); the streamer's CPU (user + system) over "
        f"{args.duration:g} s after a {args.warmup:g} s warm-up, per message; "
        f"{args.rounds} rounds, the order (none / viewers) rotated each round. Viewers: "
        "bench_web_viewer_clients.py, the page's requests (batches with the latest ticker "
        "per symbol, `{\"op\": \"batch\", \"latest\": [\"ticker\"]}`, "
        + (f"at a batch_interval of {args.batch_interval:g} s" if args.batch_interval
           is not None else f"at the sink's default batch_interval of {DEFAULT_INTERVAL:g} s")
        + "; every symbol's tickers, three fields of each (`\"fields\": [\"bid1Price\", "
        "\"ask1Price\", \"lastPrice\"]`), then one "
        "symbol's klines and trades (three fields of each trade, `\"fields\": [\"S\", "
        "\"p\", \"v\"]`); the status pushed once a second, asked with "
        "`{\"op\": \"status\", \"push\": true}`), each from its own loopback "
        "address, in their own process.", "",
        "| viewers | CPU us per message | messages/s received | streamer CPU, % of a core "
        "| writes per viewer per s | messages sent per viewer per s "
        "| KiB written per viewer per s | runs |",
        "|---|---|---|---|---|---|---|---|",
        row(0, runs[0]), row(args.viewers, runs[args.viewers]), "",
        "Median (min-max) of the runs. Writes: the sink's `batched_writes` (one per tick "
        "that had anything for a viewer that asked `{\"op\": \"batch\"}`, as the page "
        "does); messages: its `sent_messages` (one per channel and data type in a write, "
        "and each reply); KiB: its `batched_bytes` (the frames written to batched viewers), "
        "all over the window.", "",
        f"Ratio of the medians: {median_viewers / median_none:.3f} (target <= 1.10); per "
        f"round: {', '.join(f'{r:.3f}' for r in ratios)}.", "",
        *short_of_rate(args, runs),
        f"## One viewer stops reading ({args.stall_duration:g} s window)", "",
        f"{viewers['reading']} viewers read, {viewers['stalled']} stops reading once "
        "subscribed (and asks for every symbol's trades, so its socket fills within seconds).",
        "",
        "| | |", "|---|---|",
        f"| stalled viewers cut by the sink (slow_client_disconnects) | "
        f"{ws.get('slow_client_disconnects', 0)} of {viewers['stalled']} "
        f"(dropped_envelopes in all: {ws.get('dropped_envelopes', 0)}) |",
        f"| viewers connected at the end (sink) | {stall['ws_clients']} |",
        f"| the sink's inbox: events dropped (all clients miss them) | "
        f"{ws.get('inbox_dropped_events', 0)} |",
        f"| reading viewers disconnected | {viewers['reading_closed']} |",
        f"| reading viewers that received every trade of their symbol over "
        f"{viewers['seconds']} whole seconds | {viewers['reading_complete']} of "
        f"{viewers['reading']} |",
        f"| trades each received | {viewers['trades_per_reading_viewer']} |",
        f"| trades the source emitted for their symbol(s) | "
        f"{viewers['trades_sent_per_symbol']} |",
        f"| streamer CPU us per message in this run | {stall['us_per_msg']:.1f} |", "",
    ]
    text = "\n".join(lines)
    out.write_text(text)
    return text


if __name__ == "__main__":
    main()
