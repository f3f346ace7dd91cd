"""Fault 7: SIGTERM under heavy load. ``python -m streamer.cli run`` (a subprocess) streams
20 symbols at 20,000 publicTrade messages/s from the fake Bybit (its own subprocess) through
bybit.linear -> klines.from_trades -> storage (real redis-server) + console (to /dev/null).

The storage sink is configured never to flush on its own during the run (huge flush_size and
flush_interval), so what Redis holds after the exit is what the shutdown flushed. On SIGTERM:
exit code 0 within 5 s, no traceback, and the price and ticker hashes hold every symbol.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from fakebybit.__main__ import symbols as fake_symbols
from faults.helpers import toml_list
from faults.procs import fake_bybit_process, start_streamer, wait_for_log

N_SYMBOLS = 20
RATE = 20_000
LOAD_SECONDS = 3.0

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
flush_size = 10000000
flush_interval = 3600

[[sinks]]
name = "console"
type = "console"
inputs = ["bybit", "klines"]
"""


def test_sigterm_under_load_exits_cleanly_and_flushes(tmp_path: Path, redis_server,
                                                      redis_client):
    symbols = fake_symbols(N_SYMBOLS)
    log_path = tmp_path / "streamer.log"
    with fake_bybit_process("--symbols", str(N_SYMBOLS), "--rate", str(RATE)) as fake:
        config = tmp_path / "streamer.toml"
        config.write_text(CONFIG.format(symbols=toml_list(symbols), ws=fake["ws_linear"],
                                        rest=fake["rest"], port=redis_server.port))
        proc = start_streamer(config, log_path)
        try:
            wait_for_log(log_path, "pipeline running", proc, timeout=30)
            time.sleep(LOAD_SECONDS)
            # under load, and nothing flushed yet: the shutdown flush is what we check
            assert proc.poll() is None, log_path.read_text()[-3000:]
            assert redis_client.hlen("bybit-streamer:price:linear") == 0
            sent_at = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                raise AssertionError("streamer did not exit within 30 s of SIGTERM") from None
            took = time.monotonic() - sent_at
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    log = log_path.read_text(errors="replace")
    assert rc == 0, log[-3000:]
    assert took < 5.0, f"exit took {took:.2f} s"
    assert "Traceback" not in log, log[-3000:]
    assert "SIGTERM: stopping sources, flushing sinks" in log
    assert "did not finish flushing" not in log
    prices = redis_client.hgetall("bybit-streamer:price:linear")
    assert set(prices) == {s.encode() for s in symbols}
    assert all(float(v) > 0 for v in prices.values())
    tickers = redis_client.hgetall("bybit-streamer:tickers:linear")
    assert set(tickers) == {s.encode() for s in symbols}
    # Every event the sinks received was written: storage (flushed only at shutdown) wrote as
    # many as the console, and that many is real load.
    storage, console = _final_count(log, "storage"), _final_count(log, "console")
    assert storage == console >= 5_000, log[-3000:]


def _final_count(log: str, sink: str) -> int:
    """``written_events`` of a sink's ``final`` metrics line (the runtime logs it at exit)."""
    for line in log.splitlines():
        if f"final {sink}:" in line:
            for part in line.split(f"final {sink}:", 1)[1].split(","):
                key, _, value = part.strip().partition("=")
                if key == "written_events":
                    return int(value)
    raise AssertionError(f"no written_events in a 'final {sink}' line:\n{log[-3000:]}")
