"""A replay at ``speed = "max"`` into the console loses nothing, however slowly its output is
read: ``bybit.replay`` is not live, so the console's inbox (``drop_oldest`` by default, for live
sources) blocks instead of dropping.

The capture comes from a live run against the fake Bybit (MockClock): 400 trade messages. The
replay is a real ``streamer run`` whose stdout is a real pipe that the test reads slowly (2 KiB
at a time, with a pause between reads), so the console's writes keep waiting for room while
the replay emits as fast as it can; its inbox holds 8 batches.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .helpers import REPLAY, record_trades

MESSAGES = 400

@pytest.fixture(scope="module")
def large_capture(tmp_path_factory):  # type: ignore[no-untyped-def]
    capture = tmp_path_factory.mktemp("large_capture")
    return capture, record_trades(capture, MESSAGES, lambda i: 1 + i % 3)


def read_slowly(proc: subprocess.Popen[bytes], timeout: float = 120.0) -> bytes:
    """All of ``proc``'s stdout, read 2 KiB at a time with a 5 ms pause after each read; the
    timeout only turns a hang into a failure."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    out = bytearray()
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            proc.kill()
            raise AssertionError(f"stdout not closed within {timeout} s ({len(out)} bytes)")
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        data = os.read(fd, 2048)
        if not data:
            return bytes(out)
        out += data
        time.sleep(0.005)  # the slow reader itself, not a wait for anything


def test_replay_at_max_speed_into_a_slowly_read_console_loses_nothing(large_capture,
                                                                      tmp_path: Path) -> None:
    capture, live_trades = large_capture
    config = tmp_path / "replay.toml"
    config.write_text(REPLAY.format(path=capture, speed='"max"') + """
[[sinks]]
type = "console"
queue_size = 8
""")
    stderr = tmp_path / "stderr.log"
    with open(stderr, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "streamer", "run", "-c", str(config)],
                                stdout=subprocess.PIPE, stderr=err)
        try:
            out = read_slowly(proc)
            rc = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    log = stderr.read_text(errors="replace")
    got = [item["i"] for line in out.splitlines() for env in [json.loads(line)]
           for item in env["data"]]
    assert got == [t.trade_id for t in live_trades], log[-3000:]
    assert rc == 0, log[-3000:]
    assert "events lost" not in log
    assert ("no live source, only stored data (bybit: bybit.replay): sink(s) console wait "
            "when full instead of dropping (their tables do not set overflow)") in log
