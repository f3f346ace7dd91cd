"""A console whose stdout nobody reads (``streamer run | sleep 40``), as a real subprocess:
``python -m streamer run`` with its stdout a pipe this test never reads, fed by the fake
Bybit (its own process) at 2,000 messages/s, next to a ``redis`` sink (real redis-server).

Once the pipe is full the console's write blocks for good. The watchdog must log the stall
within seconds; with the console's default ``overflow = "drop_oldest"`` the redis sink keeps
receiving; with ``overflow = "block"`` the pipeline waits (the user's choice) but SIGTERM still
ends the process within the shutdown timeout, and the exit status says events were lost.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
from pipelines import toml_list

from faults.procs import fake_bybit_process, start_streamer, wait_for_log
from streamer_bybit.simulator.__main__ import symbols as fake_symbols

STREAM_KEY = "bybit-streamer:stream:linear:trades"
SHUTDOWN_TIMEOUT = 2.0

CONFIG = """
[streamer]
shutdown_timeout = {shutdown_timeout}

[[sources]]
name = "bybit"
type = "bybit.linear"
symbols = {symbols}
streams = ["trades"]
url = "{ws}"
rest_url = "{rest}"

[[sinks]]
name = "console"
type = "console"
stall_timeout = 2
{overflow}

[[sinks]]
name = "pub"
type = "redis"
port = {port}
stream = true
shutdown_timeout = 1
"""


@pytest.mark.parametrize("overflow", ["", 'overflow = "block"'])
def test_unread_stdout_is_reported_and_sigterm_still_ends_the_run(
    tmp_path: Path, redis_server, redis_client, overflow: str
) -> None:
    log_path = tmp_path / "streamer.log"
    with fake_bybit_process("--symbols", "5", "--rate", "2000") as fake:
        config = tmp_path / "streamer.toml"
        config.write_text(CONFIG.format(
            shutdown_timeout=SHUTDOWN_TIMEOUT, symbols=toml_list(fake_symbols(5)),
            ws=fake["ws_linear"], rest=fake["rest"], port=redis_server.port, overflow=overflow))
        proc = start_streamer(config, log_path, stdout=subprocess.PIPE)  # never read
        try:
            wait_for_log(log_path, "pipeline running", proc, timeout=30)
            # The pipe (64 KiB) fills in well under a second at this rate; then stall_timeout
            # plus a watchdog tick.
            wait_for_log(log_path, "sink 'console' stalled", proc, timeout=15)
            if not overflow:
                # Wait for the redis sink to write more, however long a loaded machine takes;
                # the deadline only turns "stopped too" into a failure.
                before = redis_client.xlen(STREAM_KEY)
                deadline = time.monotonic() + 30
                while redis_client.xlen(STREAM_KEY) == before:
                    assert time.monotonic() < deadline, "the redis sink stopped too"
                    time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(timeout=30)  # a hang, not a speed check
            except subprocess.TimeoutExpired:
                raise AssertionError("SIGTERM did not end the run within 30 s:\n"
                                     + log_path.read_text(errors="replace")[-3000:]) from None
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
            assert proc.stdout is not None
            proc.stdout.close()
    log = log_path.read_text(errors="replace")
    # The run ended by its own shutdown deadline (measured by the process, so a loaded
    # machine cannot make this fail), cutting off the stuck console.
    assert f"sinks did not finish flushing within {SHUTDOWN_TIMEOUT:.1f}s; cancelled" in log, \
        log[-3000:]
    assert rc == 3, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    stall = next(line for line in log.splitlines() if "sink 'console' stalled" in line)
    assert "blocked in a write of" in stall and "to stdout" in stall, stall
    if overflow:
        assert 'its producers wait for it (overflow = "block")' in stall, stall
    else:
        assert "the other sinks go on" in stall, stall
    lost = next(line for line in log.splitlines() if "events lost:" in line)
    assert "console" in lost and "lost_at_shutdown=" in lost, lost
