"""Subprocess helpers of the fault suite: the fake Bybit in its own process
(``python -m streamer_bybit.simulator``) and ``python -m streamer run``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from proc_io import readline_within

TESTS_DIR = Path(__file__).resolve().parent.parent


def _env_with_tests_path() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS_DIR), env.get("PYTHONPATH")) if p)
    return env


@contextmanager
def fake_bybit_process(*args: str, start_timeout: float = 20.0) -> Iterator[dict[str, Any]]:
    """Run ``python -m streamer_bybit.simulator --port 0 *args``; yield its JSON info line
    (port, urls)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamer_bybit.simulator", "--port", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env_with_tests_path(),
    )
    try:
        assert proc.stdout is not None
        line = _readline_within(proc, start_timeout)
        info: dict[str, Any] = json.loads(line)
        info["process"] = proc
        yield info
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _readline_within(proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    assert proc.stdout is not None
    line = readline_within(proc.stdout, timeout, "simulator")
    if not line:
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        raise AssertionError(f"simulator exited at start (rc={proc.poll()}):\n{err}")
    return line


def start_streamer(config: Path, stderr_path: Path, stdout: Any = subprocess.DEVNULL
                   ) -> subprocess.Popen[bytes]:
    """``python -m streamer run -c config``, stderr (the log) into ``stderr_path``."""
    with open(stderr_path, "wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "streamer", "run", "-c", str(config)],
            stdout=stdout, stderr=err, env=dict(os.environ),
        )


def wait_for_log(path: Path, text: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Wait until ``text`` appears in the log file (fails early if the process exited)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in path.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise AssertionError(f"streamer exited (rc={proc.returncode}) before logging "
                                 f"{text!r}:\n{path.read_text(errors='replace')[-3000:]}")
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not logged within {timeout} s:\n"
                         f"{path.read_text(errors='replace')[-3000:]}")
