"""The seed's two kline modes end to end, as a user runs them: `streamer run` with the fake
Bybit in its own process, bybit.linear -> klines.from_trades (waiter mode) and
klines.passthrough (Bybit's own klines) -> the console sink, JSON lines on stdout."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from proc_io import readline_within

TESTS = Path(__file__).resolve().parent

CONFIG = """
[[sources]]
name = "linear"
type = "bybit.linear"
symbols = ["BTCUSDT", "ETHUSDT"]
streams = ["trades", "klines"]
kline_intervals = ["1m"]
url = "{ws}"
rest_url = "{rest}"

[[transforms]]
name = "built"
type = "klines.from_trades"
inputs = ["linear"]
intervals = ["1m"]
updates = "every_trade"
first_candle = "partial"

[[transforms]]
name = "official"
type = "klines.passthrough"
inputs = ["linear"]
updates = "all"

[[sinks]]
type = "console"
inputs = ["built", "official"]
format = "json"
"""


def test_streamer_run_prints_klines_of_both_modes(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMER_")}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    fake = subprocess.Popen(
        [sys.executable, "-m", "streamer_bybit.simulator", "--symbols", "4", "--rate", "50"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    streamer = None
    try:
        assert fake.stdout is not None
        urls = json.loads(readline_within(fake.stdout, 30, "the fake Bybit"))
        config = tmp_path / "streamer.toml"
        config.write_text(CONFIG.format(ws=urls["ws_linear"], rest=urls["rest"]))
        streamer = subprocess.Popen(
            [sys.executable, "-m", "streamer", "run", "-c", str(config)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        assert streamer.stdout is not None
        seen: dict[str, set[str]] = {"built": set(), "official": set()}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(len(s) == 2 for s in seen.values()):
            left = max(0.1, deadline - time.monotonic())
            line = readline_within(streamer.stdout, left, "the streamer")
            assert line, "streamer stopped printing"
            envelope = json.loads(line)  # stdout carries nothing but wire envelopes
            assert envelope["channel"] == "linear" and envelope["data_type"] == "klines"
            for k in envelope["data"]:
                assert set(k) >= {"symbol", "interval", "timestamp", "open", "high", "low",
                                  "close", "volume", "trade_count", "closed"}
                assert k["interval"] == 60_000
                # Bybit's own candles carry no trade count; ours do.
                seen["official" if k["trade_count"] is None else "built"].add(k["symbol"])
        assert seen == {"built": {"BTCUSDT", "ETHUSDT"}, "official": {"BTCUSDT", "ETHUSDT"}}
        streamer.send_signal(signal.SIGTERM)
        _, err = streamer.communicate(timeout=10)
        assert streamer.returncode == 0, err
        assert "Traceback" not in err
    finally:
        for proc in (streamer, fake):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
