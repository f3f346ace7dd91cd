"""A replay into a redis sink whose Redis is unreachable (a loopback port where nothing
listens): ``bybit.replay`` drives trio's clock and holds it at the last record it played, so
once it stops nothing else would move time; every timer after it (the sink's retry backoff,
the sinks' shutdown deadline, ``streamer run``'s hard stop) would never fire and one SIGTERM
would not end the run. The clock runs in real time once the replay is over, played to its
end or stopped mid-way (docs/recording.md).

Both tests are a real ``streamer run`` of a capture of 200 trades at ``speed = "max"``; one
SIGTERM must end it within shutdown_timeout + the hard stop's grace + 1 s (real time: a
bound), with the sink's ``final`` line, the ``events lost`` line and exit 3:

- the replay has ended (``max_buffer`` holds the whole capture): the sink's retries and its
  shutdown deadline run after the last record;
- the replay is mid-way, blocked in ``emit`` on the sink's full inbox (``max_buffer = 50``,
  ``queue_size = 4``: a replay waits for room instead of dropping): the SIGTERM stops it there.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from faults.procs import wait_for_log
from faults.scripted_run import final_counts
from prometheus_client.parser import text_string_to_metric_families
from server_process import free_port

from streamer._cli import HARD_STOP_GRACE
from streamer._runtime import REPORT_GRACE

from .helpers import REPLAY, record_trades

MESSAGES = 200
SHUTDOWN_TIMEOUT = 1.0
#: ``streamer run`` exits at the latest at the hard stop: the pipeline's shutdown timeout
#: (the sink's own + REPORT_GRACE, being longer) + HARD_STOP_GRACE; 1 s for the exit.
EXIT_BOUND = SHUTDOWN_TIMEOUT + REPORT_GRACE + HARD_STOP_GRACE + 1.0

SINK = """
[streamer]
shutdown_timeout = {timeout}
{metrics}

[[sinks]]
name = "pub"
type = "redis"
inputs = ["bybit"]
port = {port}
stream = true
max_buffer = {max_buffer}
queue_size = 4
shutdown_timeout = {timeout}
"""


@pytest.fixture(scope="module")
def capture(tmp_path_factory):  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("capture")
    record_trades(path, MESSAGES)
    return path


@contextmanager
def replay_into_nowhere(capture: Path, tmp_path: Path, max_buffer: int, metrics: str = ""
                        ) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """``streamer run`` of the capture into a redis sink at a port where nothing listens."""
    config = tmp_path / "replay.toml"
    config.write_text(REPLAY.format(path=capture, speed='"max"') + SINK.format(
        timeout=SHUTDOWN_TIMEOUT, port=free_port(), max_buffer=max_buffer, metrics=metrics))
    log_path = tmp_path / "stderr.log"
    with open(log_path, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "streamer", "run", "-c", str(config)],
                                stdout=subprocess.DEVNULL, stderr=err)
    try:
        yield proc, log_path
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def sigterm_once(proc: subprocess.Popen[bytes], log_path: Path) -> tuple[str, float]:
    """One SIGTERM; the log and the seconds to the exit (exit 3, within EXIT_BOUND)."""
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(timeout=EXIT_BOUND)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"one SIGTERM did not end the replay within {EXIT_BOUND} s:\n"
                             + log_path.read_text(errors="replace")[-3000:]) from None
    elapsed = time.monotonic() - sent
    log = log_path.read_text(errors="replace")
    print(f"exit {rc} {elapsed:.2f} s after SIGTERM")
    assert rc == 3, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    return log, elapsed


def test_sigterm_after_the_replay_ended_ends_the_run(capture, tmp_path: Path) -> None:
    with replay_into_nowhere(capture, tmp_path, max_buffer=100_000) as (proc, log_path):
        wait_for_log(log_path, "every source has ended", proc, timeout=30)
        log, _ = sigterm_once(proc, log_path)
    assert f"replayed {MESSAGES + 1} frames" in log, log[-3000:]  # and the subscribe reply
    counts = final_counts(log, "pub")
    assert counts.get("written_events", 0) == 0, counts
    assert counts["lost_at_shutdown"] == MESSAGES, counts
    assert f"events lost: {MESSAGES} in all" in log, log[-3000:]


def inbox_depth(metrics_port: int, sink: str) -> float | None:
    """The sink's ``streamer_sink_inbox_depth_batches`` (None until the listener answers)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics",
                                    timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (sample.name == "streamer_sink_inbox_depth_batches"
                    and sample.labels["node"] == sink):
                return float(sample.value)
    return None


def test_sigterm_while_the_replay_waits_on_a_full_inbox_ends_the_run(
        capture, tmp_path: Path) -> None:
    metrics_port = free_port()
    with replay_into_nowhere(capture, tmp_path, max_buffer=50,
                             metrics=f'metrics = "127.0.0.1:{metrics_port}"') as (
            proc, log_path):
        # The sink waits for room in its full buffer and its inbox fills: nothing frees room,
        # so from here the replay is held in emit.
        deadline = time.monotonic() + 30
        while inbox_depth(metrics_port, "pub") != 4:
            assert proc.poll() is None, log_path.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "the sink's inbox did not fill within 30 s"
            time.sleep(0.05)
        log, _ = sigterm_once(proc, log_path)
    assert "every source has ended" not in log, log[-3000:]
    assert "replayed" not in log, log[-3000:]
    counts = final_counts(log, "pub")
    assert counts.get("written_events", 0) == 0, counts
    # Everything the sink took (its buffer of 50, the take waiting for room, its inbox of 4
    # reads) is lost, and counted; how many reads each take held depends on scheduling.
    taken = re.search(r"final pub: (\d+) msg in", log)
    assert taken is not None, log[-3000:]
    lost = int(taken.group(1))
    assert 50 + 4 < lost < MESSAGES, log[-3000:]
    assert counts["lost_at_shutdown"] == lost, counts
    # And the read the replay was waiting to put into the full inbox (one read's events).
    cancelled = counts["inbox_cancelled_events"]
    assert 1 <= cancelled < MESSAGES - lost, counts
    assert f"events lost: {lost + cancelled} in all" in log, log[-3000:]
