"""A replay at ``speed = "max"`` into the redis sink with a buffer far smaller than the replay
(``max_buffer = 50``, an inbox of 4 batches) while Redis holds every write for 5 s (``CLIENT
PAUSE 5000 WRITE``, sent before the run starts; PING still answers) loses nothing:
``bybit.replay`` is not live, so the sink waits for room in its buffer instead of dropping its
oldest events, its inbox blocks and the replay waits for Redis. The replay holds trio's clock
still while it waits, so the writer must write at once, not at the end of its flush window
(which would never come): ``flush_interval = 60`` (recorded seconds, longer than the capture)
makes that window the only other way out for a buffer below ``flush_size``.

The capture comes from a live run against the fake Bybit (MockClock): 300 trade messages. The
replay is a real ``streamer run`` against a real redis-server; the trades stream it writes
must hold every recorded trade, in order, once, and the run must exit 0.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from .helpers import REPLAY, record_trades

MESSAGES = 300
STREAM_KEY = "bybit-streamer:stream:linear:trades"
#: Longer than the process's start and the whole replay (well under a second) together.
PAUSE_MS = 5000

@pytest.fixture(scope="module")
def capture(tmp_path_factory):  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("capture")
    return path, record_trades(path, MESSAGES, lambda i: 1 + i % 3)


def stream_ids(client) -> list[str]:  # type: ignore[no-untyped-def]
    ids = []
    for _entry_id, fields in client.xrange(STREAM_KEY):
        ids.extend(item["i"] for item in msgspec.json.decode(fields[b"data"])["data"])
    return ids


def test_replay_at_max_speed_into_a_small_redis_buffer_loses_nothing(
        capture, redis_server, redis_client, tmp_path: Path) -> None:
    path, live_trades = capture
    config = tmp_path / "replay.toml"
    config.write_text(REPLAY.format(path=path, speed='"max"') + f"""
[[sinks]]
name = "pub"
type = "redis"
port = {redis_server.port}
stream = true
max_buffer = 50
queue_size = 4
flush_interval = 60
# Longer than the pause: the write in flight waits for Redis instead of being sent twice.
socket_timeout = 30
""")
    redis_client.execute_command("CLIENT", "PAUSE", PAUSE_MS, "WRITE")
    stderr = tmp_path / "stderr.log"
    with open(stderr, "wb") as err:
        proc = subprocess.run([sys.executable, "-m", "streamer", "run", "-c", str(config)],
                              stdout=subprocess.DEVNULL, stderr=err, timeout=60)
    log = stderr.read_text(errors="replace")
    assert proc.returncode == 0, log[-3000:]
    assert "events lost" not in log, log[-3000:]
    assert stream_ids(redis_client) == [t.trade_id for t in live_trades]
