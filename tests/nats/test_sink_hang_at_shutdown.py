"""SIGTERM while nats-server is SIGSTOPped mid-stream (it accepts, answers nothing):
``python -m streamer run`` (a subprocess) ends at the nats sink's shutdown_timeout with the
unacknowledged events counted in ``lost_at_shutdown``, a ``final`` line and exit 3, within
shutdown_timeout + 1 s of the signal (docs/faults.md). Scripted tickers: written + lost ==
emitted."""

from __future__ import annotations

from pathlib import Path

from faults.procs import wait_for_log
from faults.scripted_run import (
    emit_the_rest,
    final_counts,
    sigterm_and_wait,
    source_toml,
    streamer_run,
)
from nats_server import NatsServer

SINK_SHUTDOWN_TIMEOUT = 2.0

SINK = """
[streamer]
shutdown_timeout = 1
stats_interval = 0.2

[[sinks]]
name = "nats"
type = "nats"
inputs = ["src"]
url = "{url}"
shutdown_timeout = {timeout}
"""


def test_sigterm_while_nats_server_is_sigstopped_counts_every_buffered_event(
        tmp_path: Path) -> None:
    first, then = 1_000, 15_000
    server = NatsServer().start()
    try:
        config = SINK.format(url=server.url, timeout=SINK_SHUTDOWN_TIMEOUT) + source_toml(
            first, then)
        with streamer_run(tmp_path, config) as (proc, log_path):
            # The stats line (every 0.2 s): all of the first part is acknowledged.
            wait_for_log(log_path, f"published={first}", proc, timeout=30)
            server.pause()
            emit_the_rest(proc)
            wait_for_log(log_path, f"emitted {first + then} tickers", proc, timeout=30)
            rc, elapsed = sigterm_and_wait(proc, log_path)
    finally:
        server.stop()
    log = log_path.read_text(errors="replace")
    print(f"exit {rc} {elapsed:.2f} s after SIGTERM")
    assert rc == 3, log[-3000:]
    assert "shutdown took longer" not in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    assert final_counts(log, "nats") == {"published": first, "lost_at_shutdown": then}, log
    assert f"events lost: {then} in all" in log, log[-3000:]
    # Real time, so a bound: the sink's deadline and the process's exit.
    assert elapsed < SINK_SHUTDOWN_TIMEOUT + 1.0, elapsed
