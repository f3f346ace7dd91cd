"""``streamer run`` in a subprocess with a scripted source, for shutdown tests that count
events exactly: ``test.tickers`` emits ``first`` tickers (in batches of 100) at start, and
``then`` more once a line comes on its stdin (:func:`emit_the_rest`); it logs
``emitted N tickers`` after each part. Tickers, because every sink writes them. Also a
loopback server that accepts connections and never answers (:func:`hung_server`)."""

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

from runtime_log import counters_in

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


def source_toml(first: int, then: int = 0) -> str:
    """The ``[[sources]]`` table of the ``test.tickers`` source, named ``src``."""
    return (f'[[sources]]\nname = "src"\ntype = "test.tickers"\nfirst = {first}\n'
            f'then = {then}\n')


@contextmanager
def streamer_run(tmp_path: Path, config_text: str, stdout: int = subprocess.DEVNULL
                 ) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """``streamer run`` of ``config_text`` with the ``test.tickers`` source registered; stdin
    is a pipe (:func:`emit_the_rest`), stdout ``stdout`` (``subprocess.PIPE``: a pipe the
    test never reads, closed at the end); yields the process and its log's path."""
    script, config, log_path = tmp_path / "run.py", tmp_path / "s.toml", tmp_path / "log"
    script.write_text(SCRIPT)
    config.write_text(config_text)
    with open(log_path, "wb") as err:
        proc = subprocess.Popen([sys.executable, str(script), str(config)],
                                stdin=subprocess.PIPE, stdout=stdout, stderr=err)
    try:
        yield proc, log_path
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()


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
            return counters_in(line, f"final {sink}:")
    raise AssertionError(f"no 'final {sink}' line:\n{log[-3000:]}")


def emit_the_rest(proc: subprocess.Popen[bytes]) -> None:
    """Tell the source to emit its ``then`` tickers."""
    assert proc.stdin is not None
    proc.stdin.write(b"go\n")
    proc.stdin.flush()


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
