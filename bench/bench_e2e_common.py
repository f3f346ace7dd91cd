"""Helpers shared by the end-to-end bench (``bench_pipeline.py``) and its child processes.

Children report to the parent with one JSON object per stdout line; the parent reads them
with a deadline. Every child is started with ``PR_SET_PDEATHSIG`` so it dies with the bench,
and :class:`Children` ends the ones still running (by pid) when the bench exits.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import select
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PYTHON = sys.executable


def cpu_seconds() -> float:
    """User + system CPU seconds of this process (all threads)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def emit_line(obj: dict[str, Any]) -> None:
    """One JSON report line to the parent."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` from /proc (for children that cannot report themselves)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def ctx_switches(pid: int | str = "self") -> tuple[int, int]:
    """(voluntary, involuntary) context switches of every thread of ``pid``, from /proc.

    A voluntary switch is a block in the kernel (``epoll_wait`` that sleeps, a lock): for an
    event loop, one per wake-up from idle. (0, 0) where /proc has no such fields."""
    vol = invol = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0, 0
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        vol += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches:"):
                        invol += int(line.split()[1])
        except OSError:
            pass  # a thread that ended meanwhile
    return vol, invol


class Window:
    """A measured window: this process's CPU, wall time and context switches (and,
    optionally, a server process's CPU: redis-server, nats-server) from :meth:`start` to
    :meth:`stop`."""

    def __init__(self, server_pid: int = 0) -> None:
        self.server_pid = server_pid

    def start(self) -> None:
        self.ru0 = resource.getrusage(resource.RUSAGE_SELF)
        self.c0, self.t0, self.x0 = cpu_seconds(), time.perf_counter(), ctx_switches()
        self.s0 = proc_cpu_seconds(self.server_pid) if self.server_pid else 0.0

    def stop(self) -> dict[str, Any]:
        c1, t1, x1 = cpu_seconds(), time.perf_counter(), ctx_switches()
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        out: dict[str, Any] = {"cpu_s": c1 - self.c0, "wall_s": t1 - self.t0,
                               "user_s": ru1.ru_utime - self.ru0.ru_utime,
                               "sys_s": ru1.ru_stime - self.ru0.ru_stime,
                               "ctx_voluntary": x1[0] - self.x0[0],
                               "ctx_involuntary": x1[1] - self.x0[1]}
        if self.server_pid:
            out["server_cpu_s"] = proc_cpu_seconds(self.server_pid) - self.s0
        return out


def percentiles(values: Sequence[float], ps: tuple[float, ...]) -> dict[str, float]:
    if not values:
        return {}
    data = sorted(values)
    out = {}
    for p in ps:
        k = min(len(data) - 1, max(0, round(p / 100 * (len(data) - 1))))
        out[f"p{p:g}"] = data[k]
    out["max"] = data[-1]
    out["min"] = data[0]
    out["mean"] = sum(data) / len(data)
    return out


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Child:
    """A child process speaking JSON lines on stdout."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None,
                 name: str = "child") -> None:
        self.name = name
        self.argv = argv
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT,
            preexec_fn=_die_with_parent,
        )
        self._buf = b""
        self._err = b""
        #: Every JSON line read so far (progress lines included).
        self.lines: list[dict[str, Any]] = []

    @property
    def pid(self) -> int:
        return self.proc.pid

    def read_json(self, timeout: float, want: str | None = None) -> dict[str, Any]:
        """The next JSON line (of ``event == want`` if given) within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None and self.proc.stderr is not None
        out_fd, err_fd = self.proc.stdout.fileno(), self.proc.stderr.fileno()
        while True:
            while b"\n" in self._buf:
                line, self._buf = self._buf.split(b"\n", 1)
                line = line.strip()
                if not line.startswith(b"{"):
                    continue
                obj: dict[str, Any] = json.loads(line)
                self.lines.append(obj)
                if want is None or obj.get("event") == want:
                    return obj
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.name}: no {want or 'report'} within {timeout:.0f}s"
                                   f"{self._stderr_tail()}")
            ready, _, _ = select.select([out_fd, err_fd], [], [], left)
            if out_fd in ready:
                data = os.read(out_fd, 65536)
                if not data:
                    self.proc.wait(timeout=5)
                    raise RuntimeError(f"{self.name} exited ({self.proc.returncode}) before "
                                       f"reporting {want or ''}{self._stderr_tail()}")
                self._buf += data
            if err_fd in ready:
                data = os.read(err_fd, 65536)
                self._err = (self._err + data)[-20000:]

    def drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        fd = self.proc.stderr.fileno()
        while select.select([fd], [], [], 0)[0]:
            data = os.read(fd, 65536)
            if not data:
                break
            self._err = (self._err + data)[-20000:]

    def _stderr_tail(self) -> str:
        self.drain_stderr()
        tail = self._err.decode(errors="replace").strip().splitlines()[-15:]
        return ("\n  stderr:\n    " + "\n    ".join(tail)) if tail else ""

    def stderr_text(self) -> str:
        self.drain_stderr()
        return self._err.decode(errors="replace")

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        return self.proc.returncode

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise TimeoutError(f"{self.name} did not exit within {timeout:.0f}s"
                               f"{self._stderr_tail()}") from None


class Children:
    """Every child started by the bench; :meth:`stop_all` ends them by pid."""

    def __init__(self) -> None:
        self.live: list[Child] = []

    def start(self, argv: list[str], env: dict[str, str] | None = None,
              name: str = "child") -> Child:
        child = Child(argv, env, name)
        self.live.append(child)
        return child

    def stop(self, child: Child) -> int | None:
        code = child.stop()
        if child in self.live:
            self.live.remove(child)
        return code

    def stop_all(self) -> None:
        for child in list(self.live):
            self.stop(child)


def fake_env() -> dict[str, str]:
    """Environment for ``python -m streamer_bybit.simulator`` (the package lives in tests/)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "tests") + os.pathsep + env.get("PYTHONPATH", "")
    return env


def start_fake(children: Children, *, symbols: int, rate: float, tls: bool = False,
               stamp: bool = False, tickers: bool = False, duration: float = 900.0,
               seed: int = 1, pacing: str = "batched", extra: Sequence[str] = ()
               ) -> tuple[Child, dict[str, Any]]:
    """Start the fake Bybit in its own process; return it and its ``{"ws_linear", ...}``.
    ``pacing`` at a fixed rate: "batched" (every message due at a millisecond wake-up, in
    shared writes) or "even" (one message every 1/rate s, each its own write). ``extra``:
    more of the simulator's options (its books: ``--no-trades --book-rate N``...)."""
    argv = [PYTHON, "-m", "streamer_bybit.simulator", "--symbols", str(symbols),
            "--rate", str(rate), "--duration", str(duration), "--seed", str(seed),
            "--idle-timeout", "0", "--pacing", pacing, *extra]
    if tls:
        argv.append("--tls")
    if stamp:
        argv.append("--stamp")
    if not tickers:
        argv.append("--no-tickers")
    child = children.start(argv, fake_env(), name="simulator")
    info = child.read_json(timeout=30)
    return child, info


def symbol_names(n: int) -> list[str]:
    """The fake's symbol names for ``--symbols n`` (the rule of
    streamer_bybit.simulator.__main__)."""
    bases = ["BTC", "ETH", "SOL", "XRP", "1000PEPE", "DOGE", "BNB", "ADA"]
    out = [b + "USDT" for b in bases[:n]]
    i = 0
    while len(out) < n:
        out.append(f"C{i:04d}USDT")
        i += 1
    return out
