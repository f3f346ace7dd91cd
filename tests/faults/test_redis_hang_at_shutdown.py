"""SIGTERM while Redis hangs: ``python -m streamer run`` (a subprocess) with a redis and a
storage sink, and a Redis that accepts connections but never answers: a real redis-server
SIGSTOPped mid-stream, or a TCP server that accepts and never reads.

Each sink's shutdown_timeout (2 s) is shorter than its socket_timeout (5 s, the default): the
write in flight at SIGTERM, and any retry, must still end at the sink's deadline. The run
then logs its ``final`` lines with what the sinks held counted in ``lost_at_shutdown`` and
exits 3, within shutdown_timeout + 1 s of the signal, before the hard stop
(docs/faults.md). The source emits a scripted number of tickers (both sinks write tickers),
so the figures are exact: written + lost == emitted.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
from redis_server import RedisServer

from faults.procs import wait_for_log
from faults.scripted_run import (
    emit_the_rest,
    final_counts,
    hung_server,
    sigterm_and_wait,
    source_toml,
    streamer_run,
)

SINK_SHUTDOWN_TIMEOUT = 2.0

SINKS = """
[streamer]
shutdown_timeout = 1

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


def config(port: int, first: int, then: int = 0) -> str:
    return SINKS.format(port=port, timeout=SINK_SHUTDOWN_TIMEOUT) + source_toml(first, then)


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
    with RedisServer() as server, streamer_run(tmp_path, config(server.port, first, then)) as (
            proc, log_path):
        wait_for_log(log_path, f"emitted {first} tickers", proc, timeout=30)
        server.wait_until(lambda: stored_tickers(server) == (first, first), 30,
                          interval=0.05, waiting_for="did not get the first tickers")
        server.pause()
        emit_the_rest(proc)
        wait_for_log(log_path, f"emitted {first + then} tickers", proc, timeout=30)
        rc, elapsed = sigterm_and_wait(proc, log_path)
        server.resume()
        # Nothing of the second part reached Redis: it was lost, and counted.
        assert stored_tickers(server) == (first, first)
    assert_counted_in_time(rc, elapsed, log_path.read_text(errors="replace"),
                           written=first, lost=then)


def test_sigterm_while_the_server_accepts_and_never_answers_counts_every_buffered_event(
        tmp_path: Path) -> None:
    emitted = 15_000
    with hung_server() as port, streamer_run(tmp_path, config(port, emitted)) as (
            proc, log_path):
        # The sinks' first check waits socket_timeout (5 s) for a PING answer.
        wait_for_log(log_path, f"emitted {emitted} tickers", proc, timeout=30)
        rc, elapsed = sigterm_and_wait(proc, log_path)
    assert_counted_in_time(rc, elapsed, log_path.read_text(errors="replace"),
                           written=0, lost=emitted)
