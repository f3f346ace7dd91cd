"""SIGTERM while Redis hangs: ``python -m streamer run`` (a subprocess) with a redis and a
storage sink, and a Redis that accepts connections but never answers: a real redis-server
SIGSTOPped mid-stream, or a TCP server that accepts and never reads.

Each sink's shutdown_timeout (2 s) is shorter than its socket_timeout (5 s, the default): the
write in flight at SIGTERM, and any retry, must still end at the sink's deadline. The run
then logs its ``final`` lines with what the sinks held counted in ``lost_at_shutdown`` and
exits 3, within shutdown_timeout + 1 s of the signal, before the hard stop
(docs/faults.md). A test source emits a scripted number of tickers (both sinks write
tickers), so the figures are exact: written + lost == emitted.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec
from redis_server import RedisServer

from faults.procs import wait_for_log

SCRIPT = '''
import argparse, sys
import attrs, trio
from streamer import Ticker, hookimpl
from streamer._cli import cmd_run
from streamer._plugins import load_plugin_manager


@attrs.define
class TickersConfig:
    first: int = 0
    then: int = 0


def tickers(start, count):
    return [Ticker("linear", f"S{i}", 1_700_000_000_000 + i,
                   {"symbol": f"S{i}", "markPrice": f"{i}.5"})
            for i in range(start, start + count)]


class Tickers:
    """``first`` tickers at start; ``then`` more once a line comes on stdin."""

    def __init__(self, config, context):
        self.config = config

    async def emit_tickers(self, emit, start, count):
        for at in range(start, start + count, 100):
            await emit(tickers(at, min(100, start + count - at)))
        print(f"emitted {start + count} tickers", file=sys.stderr, flush=True)

    async def run(self, emit, *, task_status=trio.TASK_STATUS_IGNORED):
        task_status.started()
        await self.emit_tickers(emit, 0, self.config.first)
        if self.config.then:
            await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
            await self.emit_tickers(emit, self.config.first, self.config.then)
        await trio.sleep_forever()


class Plugin:
    @staticmethod
    @hookimpl
    def streamer_register_sources(register):
        register("test.tickers", TickersConfig, Tickers)


pm = load_plugin_manager()
pm.register(Plugin(), "test-tickers")
sys.exit(cmd_run(argparse.Namespace(config=sys.argv[1], log_level=None), pm))
'''

SINK_SHUTDOWN_TIMEOUT = 2.0

CONFIG = """
[streamer]
shutdown_timeout = 1

[[sources]]
name = "src"
type = "test.tickers"
first = {first}
then = {then}

[[sinks]]
name = "pub"
type = "redis"
inputs = ["src"]
port = {port}
stream = true
shutdown_timeout = {timeout}

[[sinks]]
name = "store"
type = "storage"
inputs = ["src"]
port = {port}
flush_interval = 0.01
shutdown_timeout = {timeout}
"""


@contextmanager
def streamer_run(tmp_path: Path, port: int, first: int, then: int
                 ) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    script, config, log_path = tmp_path / "run.py", tmp_path / "s.toml", tmp_path / "log"
    script.write_text(SCRIPT)
    config.write_text(CONFIG.format(first=first, then=then, port=port,
                                    timeout=SINK_SHUTDOWN_TIMEOUT))
    with open(log_path, "wb") as err:
        proc = subprocess.Popen([sys.executable, str(script), str(config)],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
    try:
        yield proc, log_path
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def sigterm_and_wait(proc: subprocess.Popen[bytes], log_path: Path) -> tuple[int, float]:
    """SIGTERM; the exit status and the seconds from the signal to the exit."""
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(timeout=30)  # a hang, not a speed check
    except subprocess.TimeoutExpired:
        raise AssertionError("SIGTERM did not end the run within 30 s:\n"
                             + log_path.read_text(errors="replace")[-3000:]) from None
    return rc, time.monotonic() - sent


def final_counts(log: str, sink: str) -> dict[str, int]:
    """The counters of a sink's ``final`` line (the runtime logs it at exit)."""
    for line in log.splitlines():
        if f"final {sink}: " in line:
            pairs = line.split(f"final {sink}: ", 1)[1].split(", ")
            return {k: int(v) for k, _, v in (p.strip().partition("=") for p in pairs)}
    raise AssertionError(f"no 'final {sink}' line:\n{log[-3000:]}")


def assert_counted_in_time(rc: int, elapsed: float, log: str, written: int, lost: int) -> None:
    print(f"exit {rc} {elapsed:.2f} s after SIGTERM")
    assert rc == 3, log[-3000:]
    assert "shutdown took longer" not in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    for sink in ("pub", "store"):
        counts = final_counts(log, sink)
        assert counts.get("written_events", 0) == written, (sink, counts)
        assert counts.get("lost_at_shutdown", 0) == lost, (sink, counts)
    assert f"events lost: {2 * lost} in all" in log, log[-3000:]
    # Real time, so a bound: the sinks' deadline and the process's exit.
    assert elapsed < SINK_SHUTDOWN_TIMEOUT + 1.0, elapsed


def stored_tickers(server: RedisServer) -> tuple[int, int]:
    """(tickers in the redis sink's streams, tickers in the storage sink's hash)."""
    client = server.client()
    try:
        streamed = sum(len(msgspec.json.decode(fields[b"data"])["data"])
                       for key in client.scan_iter("bybit-streamer:stream:*")
                       for _, fields in client.xrange(key))
        return streamed, int(client.hlen("bybit-streamer:tickers:linear"))
    finally:
        client.close()


def test_sigterm_while_redis_server_is_sigstopped_counts_every_buffered_event(
        tmp_path: Path) -> None:
    first, then = 1_000, 15_000
    with RedisServer() as server, streamer_run(tmp_path, server.port, first, then) as (
            proc, log_path):
        wait_for_log(log_path, f"emitted {first} tickers", proc, timeout=30)
        server.wait_until(lambda: stored_tickers(server) == (first, first), 30,
                          interval=0.05, waiting_for="did not get the first tickers")
        server.pause()
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
        wait_for_log(log_path, f"emitted {first + then} tickers", proc, timeout=30)
        rc, elapsed = sigterm_and_wait(proc, log_path)
        server.resume()
        # Nothing of the second part reached Redis: it was lost, and counted.
        assert stored_tickers(server) == (first, first)
    assert_counted_in_time(rc, elapsed, log_path.read_text(errors="replace"),
                           written=first, lost=then)


@contextmanager
def hung_server() -> Iterator[int]:
    """A loopback TCP server that accepts every connection and never reads nor answers;
    yields its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(listener.accept()[0])
            except OSError:  # closed: the test is over
                return

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        acceptor.join(timeout=10)
        for conn in held:
            conn.close()


def test_sigterm_while_the_server_accepts_and_never_answers_counts_every_buffered_event(
        tmp_path: Path) -> None:
    emitted = 15_000
    with hung_server() as port, streamer_run(tmp_path, port, emitted, 0) as (proc, log_path):
        # The sinks' first check waits socket_timeout (5 s) for a PING answer.
        wait_for_log(log_path, f"emitted {emitted} tickers", proc, timeout=30)
        rc, elapsed = sigterm_and_wait(proc, log_path)
    assert_counted_in_time(rc, elapsed, log_path.read_text(errors="replace"),
                           written=0, lost=emitted)
