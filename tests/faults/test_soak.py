"""Fault 8: a 10-minute soak at 2,000 publicTrade messages/s (marked slow: excluded from the
default run). ``python -m streamer run`` and the fake Bybit run as subprocesses:
bybit.linear (trades, tickers) -> klines.from_trades (1m, 5m) -> storage + redis pub/sub
(real redis-server) + console (to /dev/null).

Passes when the streamer's RSS grew less than 10% between minute 1 and minute 10, nothing was
logged at ERROR level, and it still exits cleanly on SIGTERM.

    .venv/bin/python -m pytest tests/faults -m slow -s

``STREAMER_SOAK_SECONDS`` shortens the run (the baseline is then taken at a tenth of it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from pipelines import toml_list

from faults.procs import fake_bybit_process, start_streamer, wait_for_log
from streamer_bybit.simulator.__main__ import symbols as fake_symbols

N_SYMBOLS = 20
RATE = 2_000
SOAK_SECONDS = float(os.environ.get("STREAMER_SOAK_SECONDS", "600"))
SAMPLE_EVERY = 5.0
MAX_GROWTH = 0.10

CONFIG = """
[streamer]
log_level = "INFO"

[[sources]]
name = "bybit"
type = "bybit.linear"
symbols = {symbols}
streams = ["trades", "tickers"]
url = "{ws}"
rest_url = "{rest}"

[[transforms]]
name = "klines"
type = "klines.from_trades"
inputs = ["bybit"]
intervals = ["1m", "5m"]
first_candle = "partial"

[[sinks]]
name = "storage"
type = "storage"
inputs = ["bybit", "klines"]
port = {port}
intervals = ["1m", "5m"]
history = 100

[[sinks]]
name = "pubsub"
type = "redis"
inputs = ["bybit", "klines"]
port = {port}

[[sinks]]
name = "console"
type = "console"
inputs = ["bybit", "klines"]
"""


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


@pytest.mark.slow
@pytest.mark.timeout(SOAK_SECONDS + 300)  # the soak itself, start-up and the SIGTERM exit
def test_soak_memory_flat_and_no_errors(tmp_path: Path, redis_server, redis_client):
    symbols = fake_symbols(N_SYMBOLS)
    log_path = tmp_path / "streamer.log"
    baseline_at = SOAK_SECONDS / 10
    samples: list[tuple[float, int]] = []
    with fake_bybit_process("--symbols", str(N_SYMBOLS), "--rate", str(RATE),
                            "--idle-timeout", "0") as fake:
        config = tmp_path / "streamer.toml"
        config.write_text(CONFIG.format(symbols=toml_list(symbols), ws=fake["ws_linear"],
                                        rest=fake["rest"], port=redis_server.port))
        proc = start_streamer(config, log_path)
        try:
            wait_for_log(log_path, "pipeline running", proc, timeout=60)
            start = time.monotonic()
            while (elapsed := time.monotonic() - start) < SOAK_SECONDS:
                assert proc.poll() is None, log_path.read_text(errors="replace")[-3000:]
                assert fake["process"].poll() is None, "the fake Bybit died"
                samples.append((elapsed, rss_kib(proc.pid)))
                time.sleep(min(SAMPLE_EVERY, SOAK_SECONDS - elapsed))
            samples.append((time.monotonic() - start, rss_kib(proc.pid)))
            proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                raise AssertionError("streamer did not exit within 30 s of SIGTERM") from None
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    log = log_path.read_text(errors="replace")
    baseline = next(rss for t, rss in samples if t >= baseline_at)
    final = samples[-1][1]
    growth = (final - baseline) / baseline
    print(f"\nRSS (KiB) every {SAMPLE_EVERY:g} s: {[rss for _, rss in samples]}")
    print(f"baseline at {baseline_at:.0f} s: {baseline} KiB; end: {final} KiB; "
          f"growth {growth:+.1%}")
    print("\n".join(line for line in log.splitlines() if " final " in line))
    errors = [line for line in log.splitlines() if " ERROR " in line]
    assert not errors, "\n".join(errors[:20])
    assert "Traceback" not in log
    assert rc == 0, log[-3000:]
    assert growth < MAX_GROWTH, f"RSS grew {growth:.1%} from {baseline} to {final} KiB"
    assert redis_client.hlen("bybit-streamer:price:linear") == N_SYMBOLS
