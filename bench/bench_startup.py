"""Start-up cost: the wall time of ``streamer check`` and the peak RSS of a console-only run.

    .venv/bin/python bench/bench_startup.py [--runs 5] [--seconds 4]
                                            [--python OTHER/.venv/bin/python ...]

Each ``--python`` (default: this interpreter) names an install of the streamer to measure;
give two (an old commit's worktree and this one) to compare them in the same run, rounds
interleaved so both see the same load. For each install and each of ``--runs`` rounds:

- ``check``: ``streamer check -c streamer.toml.example`` (its ``bin/streamer``), wall time
  from fork to exit, the child's CPU seconds and peak RSS (``ru_maxrss``, both from
  ``wait4``). On a loaded machine the CPU time is the steadier figure.
- ``run``: ``streamer run`` of the example's pipeline (``bybit.linear`` trades -> the
  ``klines.from_trades`` transform, an update per trade -> the ``console`` sink, stdout to
  a file whose lines are counted) against the fake Bybit on 127.0.0.1 (2 symbols, ``--rate``
  messages/s), ``--seconds`` after the pipeline said it was running, then SIGTERM; its peak
  RSS (``ru_maxrss`` from ``wait4``), exit code and console lines.

The results file also says whether the installs start from cached bytecode (the
``PYTHONDONTWRITEBYTECODE`` the children inherit, a ``__pycache__`` beside each ``streamer``
package): without it every start compiles the project's sources, part of what is measured.

Medians (and min-max) go to stdout and to ``bench/results/<UTC date>-startup.md`` with the
commit of each install (``git rev-parse`` of the tree its ``streamer`` package is imported
from, "+dirty" if it has uncommitted changes), the machine (CPU model, cores) and the load
average before and after. Every child is on 127.0.0.1, bounded in time, and ended on exit.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_e2e_common import ROOT, Children, start_fake
from bench_pipeline import machine_info

EXAMPLE = ROOT / "streamer.toml.example"
READY_TIMEOUT = 30.0
CHECK_TIMEOUT = 60.0


def describe(python: str) -> dict[str, str]:
    """Where ``python`` imports ``streamer`` from, and that tree's commit."""
    where = subprocess.run(
        [python, "-c", "import os, streamer; print(os.path.dirname(streamer.__file__))"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip()
    commit = subprocess.run(["git", "-C", where, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True, check=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", where, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, check=True).stdout.strip()
    subject = subprocess.run(["git", "-C", where, "log", "-1", "--format=%s"],
                             capture_output=True, text=True, check=True).stdout.strip()
    tree = subprocess.run(["git", "-C", where, "rev-parse", "--show-toplevel"],
                          capture_output=True, text=True, check=True).stdout.strip()
    return {"commit": commit + ("+dirty" if dirty else ""), "subject": subject[:72],
            "tree": tree, "python": python,
            "pycache": "yes" if Path(where, "__pycache__").is_dir() else "no"}


def bytecode_note(installs: list[dict[str, str]]) -> str:
    """Whether the installs' own modules start from cached bytecode: with
    ``PYTHONDONTWRITEBYTECODE`` set and no ``__pycache__`` in a tree (an editable install
    never run without it), every ``streamer`` start compiles the core's and the plugins'
    sources again, a cost that grows with the source a command imports."""
    env = os.environ.get("PYTHONDONTWRITEBYTECODE")
    trees = ", ".join(f"`{inst['tree']}` {inst['pycache']}" for inst in installs)
    return (f"Bytecode: PYTHONDONTWRITEBYTECODE={env!r} (inherited by every child); "
            f"`__pycache__` beside the `streamer` package: {trees}.")


def streamer_bin(python: str) -> str:
    return str(Path(python).parent / "streamer")


def wait_child(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, int, float]:
    """Reap ``proc`` with ``wait4``: (exit status, peak RSS in KiB, CPU seconds user + system).
    SIGKILL past ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)  # Popen must not reap it
            return proc.returncode, usage.ru_maxrss, usage.ru_utime + usage.ru_stime
        if time.monotonic() > deadline:
            proc.kill()
            deadline = float("inf")
        time.sleep(0.005)


def time_check(python: str) -> tuple[float, int, float]:
    """Seconds from fork to exit of ``streamer check``, its peak RSS (KiB) and CPU seconds."""
    start = time.perf_counter()
    proc = subprocess.Popen([streamer_bin(python), "check", "-c", str(EXAMPLE)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    code, rss, cpu = wait_child(proc, CHECK_TIMEOUT)
    elapsed = time.perf_counter() - start
    if code != 0:
        assert proc.stderr is not None
        raise RuntimeError(f"streamer check exited {code}: {proc.stderr.read().decode()[-500:]}")
    return elapsed, rss, cpu


def pipeline_toml(info: dict[str, str]) -> str:
    """streamer.toml.example's pipeline, its source pointed at the fake."""
    return f"""
[streamer]
log_level = "INFO"

[[sources]]
name = "linear"
type = "bybit.linear"
url = "{info["ws_linear"]}"
rest_url = "{info["rest"]}"
symbols = ["BTCUSDT", "ETHUSDT"]
streams = ["trades"]

[[transforms]]
name = "klines"
type = "klines.from_trades"
inputs = ["linear"]
intervals = ["1m", "5m", "1h"]
waiter_latency_ms = 100
updates = "every_trade"

[[sinks]]
type = "console"
inputs = ["klines"]
format = "json"
"""


def run_pipeline(python: str, config: Path, seconds: float) -> tuple[int, int, int]:
    """``streamer run`` for ``seconds`` once running, then SIGTERM: its exit code, peak RSS
    (KiB) and the lines the console sink printed (proof that events flowed)."""
    out_path = config.with_suffix(".out")
    with open(out_path, "wb") as out:
        proc = subprocess.Popen([streamer_bin(python), "run", "-c", str(config)],
                                stdout=out, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    try:
        os.set_blocking(proc.stderr.fileno(), False)
        log = b""
        deadline = time.monotonic() + READY_TIMEOUT
        while b"pipeline running" not in log:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"streamer run not running: {log.decode()[-800:]}")
            time.sleep(0.05)
            log += proc.stderr.read() or b""
        time.sleep(seconds)  # the pipeline streams meanwhile; nothing to wait for
        proc.send_signal(signal.SIGTERM)
        code, rss, _cpu = wait_child(proc, 15.0)
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            proc.wait()
        raise
    finally:
        proc.stderr.close()
    with open(out_path, "rb") as f:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 16), b""))
    return code, rss, lines


def spread(values: list[float], fmt: str) -> str:
    return f"{format(statistics.median(values), fmt)} ({format(min(values), fmt)}-" \
           f"{format(max(values), fmt)})"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--python", action="append", help="an install's interpreter (repeatable)")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--seconds", type=float, default=4.0, help="run time once ready")
    p.add_argument("--rate", type=float, default=200.0, help="fake messages/s")
    p.add_argument("--summary", default=None, help="Markdown file (default bench/results/...)")
    args = p.parse_args()
    pythons = args.python or [sys.executable]
    installs = [describe(py) for py in pythons]
    machine = machine_info()
    children = Children()
    checks: list[list[tuple[float, int, float]]] = [[] for _ in pythons]
    runs: list[list[tuple[int, int, int]]] = [[] for _ in pythons]
    try:
        _fake, info = start_fake(children, symbols=2, rate=args.rate, duration=1800.0)
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "streamer.toml"
            config.write_text(pipeline_toml(info))
            for py in pythons:  # warm the page cache and .pyc files before timing
                time_check(py)
            for round_no in range(args.runs):
                order = list(range(len(pythons)))
                if round_no % 2:
                    order.reverse()
                for i in order:
                    checks[i].append(time_check(pythons[i]))
                    runs[i].append(run_pipeline(pythons[i], config, args.seconds))
                    print(f"round {round_no + 1} {installs[i]['commit']}: check "
                          f"{checks[i][-1][0]:.3f} s ({checks[i][-1][2]:.3f} s CPU), run peak RSS "
                          f"{runs[i][-1][1] / 1024:.1f} MB"
                          f" (exit {runs[i][-1][0]}, {runs[i][-1][2]} console lines)",
                          flush=True)
    finally:
        children.stop_all()
    load_end = os.getloadavg()

    stamp = datetime.now(timezone.utc)
    lines = [
        f"# Start-up: `streamer check` and a console-only run ({stamp:%Y-%m-%d %H:%M} UTC)",
        "",
        f"Command: `{' '.join([Path(sys.executable).name, *sys.argv])}`",
        "",
        f"Machine: {machine['cpu_model']}, {machine['nproc']} cores, Python "
        f"{machine['python']}, {machine['platform']}. Load average (1, 5, 15 min) before "
        f"{tuple(round(x, 2) for x in machine['loadavg_start'])}, after "
        f"{tuple(round(x, 2) for x in load_end)}.",
        "",
        bytecode_note(installs),
        "",
        f"Settings: {args.runs} rounds (installs interleaved, order alternating), one untimed "
        f"`check` per install first; `check` = `streamer check -c streamer.toml.example`, "
        f"wall time fork to exit and CPU (user + system, from `wait4`: less sensitive to "
        f"the load than the wall time); `run` = the example's pipeline (bybit.linear trades -> "
        f"klines.from_trades 1m 5m 1h, every trade's update -> console, stdout to a file) "
        f"against the fake Bybit (2 symbols, {args.rate:g} msg/s) for {args.seconds:g} s "
        f"after `pipeline running`, then SIGTERM; peak RSS = `ru_maxrss` of the child from "
        f"`wait4`. Median (min-max).",
        "",
        "| install | commit | `check` wall s | `check` CPU s | `check` peak RSS MB | "
        "`run` peak RSS MB | `run` console lines | `run` exit codes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, inst in enumerate(installs):
        lines.append(
            f"| `{inst['tree']}` | {inst['commit']} ({inst['subject']}) | "
            f"{spread([c[0] for c in checks[i]], '.3f')} | "
            f"{spread([c[2] for c in checks[i]], '.3f')} | "
            f"{spread([c[1] / 1024 for c in checks[i]], '.1f')} | "
            f"{spread([r[1] / 1024 for r in runs[i]], '.1f')} | "
            f"{spread([float(r[2]) for r in runs[i]], '.0f')} | "
            f"{sorted({r[0] for r in runs[i]})} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.summary) if args.summary else (
        ROOT / "bench" / "results" / f"{stamp:%Y-%m-%d-%H%M}-startup.md")
    out.write_text(text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
