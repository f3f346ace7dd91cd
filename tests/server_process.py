"""A real server binary run as a child process for the tests (``redis-server``,
``nats-server``): found on the machine or the suite fails, started with its output in a log
file of its own working directory, waited for until it answers, killed or stopped.

A missing binary FAILS the test rather than skips it: ``scripts/test`` installs the servers,
and a silently skipped suite would hide regressions. A server that exits at start or does not
answer in time fails the test with the end of its log, which says why.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import pytest

T = TypeVar("T")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_on_free_ports(make: Callable[[], T], start: Callable[[T], Any],
                        stop: Callable[[T], Any], attempts: int = 3) -> T:
    """``start(make())``, again with a new ``make()`` (new ports) when the server could not
    bind one: :func:`free_port` only knows the port was free when it asked, and another
    process (another test suite, a server started meanwhile) may bind it first."""
    for attempt in range(attempts):
        server = make()
        try:
            start(server)
            return server
        except pytest.fail.Exception as exc:
            stop(server)
            if "address already in use" not in str(exc).lower() or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def running_on_free_ports(make: Callable[[], T], start: Callable[[T], Any],
                          stop: Callable[[T], Any]) -> Iterator[T]:
    """The body of a server fixture: :func:`start_on_free_ports`, yield the server, stop it
    (``yield from running_on_free_ports(...)``)."""
    server = start_on_free_ports(make, start, stop)
    try:
        yield server
    finally:
        stop(server)


def server_binary(name: str, env: str, *, suite: str, also: Sequence[str] = ()) -> str:
    """Path of ``name``: ``$env``, else on PATH, else the first of ``also`` that exists."""
    binary = os.environ.get(env) or shutil.which(name) or next(
        (path for path in also if os.path.exists(path)), None)
    if not binary or not os.path.exists(binary):
        places = [f"${env}", "PATH", *(os.path.dirname(path) for path in also)]
        looked = ", ".join(places[:-1]) + " and " + places[-1]
        pytest.fail(f"{name} not found (looked at {looked}). The {suite} tests run against a "
                    f"real server: install it (`apt-get install {name}`).")
    return binary


class ServerProcess:
    """One server process; subclasses say how to run it (:meth:`_args`) and when it is up."""

    #: How much of the end of the log a failure shows.
    log_tail_chars = 3000

    def __init__(self, what: str, workdir: str, log_name: str) -> None:
        #: Names the server in failure messages (``redis-server``, ``nats-server n1``).
        self.what = what
        self.workdir = workdir
        self.log_path = os.path.join(workdir, log_name)
        self.process: subprocess.Popen[bytes] | None = None

    def _args(self) -> list[str]:
        raise NotImplementedError

    def launch(self) -> None:
        """Start the process (appending to its log); :meth:`wait_until` waits for it."""
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(self._args(), stdout=log, stderr=subprocess.STDOUT,
                                        **self._popen_options())
        log.close()

    def _popen_options(self) -> dict[str, Any]:
        """More ``subprocess.Popen`` arguments (a user to run as, a session of its own)."""
        return {}

    def wait_until(self, ready: Callable[[], bool], timeout: float, *, interval: float,
                   waiting_for: str) -> None:
        """Poll ``ready()``; fail with the log's end if the process exits or time runs out.

        Past the timeout the process is stopped first: a test that fails here never reaches
        the cleanup that would stop it."""
        deadline = time.monotonic() + timeout
        assert self.process is not None
        # Exit first: whatever answers on the port may not be this server (it may have
        # failed to bind a port someone else holds).
        while self.process.poll() is not None or not ready():
            if self.process.poll() is not None:
                pytest.fail(f"{self.what} exited at start:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                tail = self.log_tail()
                self.stop()
                pytest.fail(f"{self.what} {waiting_for} within {timeout}s:\n{tail}")
            time.sleep(interval)

    def log_tail(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-self.log_tail_chars:].decode(errors="replace")
        except OSError:
            return "(no log)"

    def kill(self) -> None:
        """SIGKILL: the server vanishes without a goodbye, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def pause(self) -> None:
        """SIGSTOP: the server hangs. Its kernel still accepts connections and buffers what
        is sent; nothing is read or answered until :meth:`resume`."""
        assert self.process is not None and self.process.poll() is None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)

    def stop(self, remove: bool = True) -> None:
        """SIGTERM (SIGKILL after 10 s); ``remove`` deletes the working directory too. A
        paused server is resumed first (a stopped process does not act on SIGTERM)."""
        if self.process is not None and self.process.poll() is None:
            self.resume()
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        if remove:
            shutil.rmtree(self.workdir, ignore_errors=True)
