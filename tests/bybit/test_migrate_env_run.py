"""The older streamer's sample .env end to end: `python -m streamer migrate-env` ->
`streamer check` -> `streamer run` against the fake Bybit (its own process) and a real
redis-server that wants the password from the .env; /readyz, /metrics and Redis show it
streams, and the run names the older variables it ignores."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from proc_io import readline_within
from prometheus_client.parser import text_string_to_metric_families
from redis_server import RedisServer
from server_process import free_port

from streamer_bybit.oldenv import parse_dotenv

TESTS = Path(__file__).resolve().parents[1]
SAMPLE = Path(__file__).with_name("older-streamer.env")
STREAMER = [sys.executable, "-m", "streamer"]


def http(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_migrated_sample_runs_against_the_fake(tmp_path) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("STREAMER_")}
    base["PYTHONPATH"] = os.pathsep.join([str(TESTS), base.get("PYTHONPATH", "")])
    old = parse_dotenv(SAMPLE.read_text())
    migrated = subprocess.run([*STREAMER, "migrate-env", str(SAMPLE)], env=base,
                              capture_output=True, text=True, timeout=60, check=True).stdout
    config = tmp_path / "streamer.toml"
    config.write_text(migrated)
    # Checked as it will run: with the .env's variables set (its secrets among them).
    checked = subprocess.run([*STREAMER, "check", "-c", str(config)], env={**base, **old},
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stderr
    redis = RedisServer(password=old["STREAMER_REDIS_PASSWORD"]).start()
    fake = subprocess.Popen([sys.executable, "-m", "streamer_bybit.simulator", "--symbols", "4",
                             "--rate", "50"], env=base, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    streamer = None
    try:
        assert fake.stdout is not None
        urls = json.loads(readline_within(fake.stdout, 60, "the fake Bybit"))
        metrics_port = free_port()
        # The .env as docker compose's env_file passes it, plus overrides pointing the
        # pipeline at the fake, the test Redis and a loopback WebSocket port.
        env = {**base, **old, "STREAMER_STREAMER__METRICS": f'"127.0.0.1:{metrics_port}"',
               "STREAMER_STREAMER__READY_MAX_DATA_AGE": "5",
               "STREAMER_SINKS__REDIS__HOST": "127.0.0.1",
               "STREAMER_SINKS__REDIS__PORT": str(redis.port),
               "STREAMER_SINKS__STORAGE__HOST": "127.0.0.1",
               "STREAMER_SINKS__STORAGE__PORT": str(redis.port),
               "STREAMER_SINKS__WEBSOCKET__HOST": '"127.0.0.1"',
               "STREAMER_SINKS__WEBSOCKET__PORT": "0"}
        for source in ("linear", "linear_klines", "spot", "spot_klines"):
            channel = source.split("_")[0]
            env[f"STREAMER_SOURCES__{source.upper()}__URL"] = json.dumps(urls[f"ws_{channel}"])
            env[f"STREAMER_SOURCES__{source.upper()}__REST_URL"] = json.dumps(urls["rest"])
        log = tmp_path / "stderr.log"
        with log.open("w") as err:
            streamer = subprocess.Popen([*STREAMER, "run", "-c", str(config)], env=env,
                                        stdout=subprocess.DEVNULL, stderr=err)
            deadline = time.monotonic() + 60
            status = 0
            while time.monotonic() < deadline and status != 200:
                time.sleep(0.2)
                assert streamer.poll() is None, log.read_text()
                try:
                    status, body = http(f"http://127.0.0.1:{metrics_port}/readyz")
                except OSError:
                    continue
            assert status == 200, body
            # Ready means connected with fresh data; each kline source's first trade may
            # still be on its way (50 messages/s over 4 symbols and two categories).
            trades: dict[str, float] = {}
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                _, text = http(f"http://127.0.0.1:{metrics_port}/metrics")
                families = {f.name: f for f in text_string_to_metric_families(text.decode())}
                trades = {s.labels["node"]: s.value
                          for s in families["streamer_source_received_trades"].samples}
                if trades.get("linear_klines", 0) > 0 and trades.get("spot_klines", 0) > 0:
                    break
                time.sleep(0.2)
            assert trades["linear_klines"] > 0 and trades["spot_klines"] > 0, trades
            client = redis.client()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not client.hlen("bybit-streamer:tickers:spot"):
                time.sleep(0.2)
            assert client.hlen("bybit-streamer:tickers:linear") == 3
            assert client.hlen("bybit-streamer:price:spot") == 3
            streamer.send_signal(signal.SIGTERM)
            assert streamer.wait(timeout=30) == 0
        lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        messages = [line.get("message", line.get("msg", "")) for line in lines]
        ignored = [m for m in messages if m.startswith("ignored: ")]
        assert len(ignored) == 1, messages
        assert "STREAMER_BYBIT_SYMBOLS" in ignored[0] and "STREAMER_HOST" in ignored[0]
        # Read through password_env / auth_key_env: not ignored.
        assert "STREAMER_REDIS_PASSWORD" not in ignored[0]
        assert "STREAMER_WSS_AUTH_KEY" not in ignored[0]
        assert any(f"http://127.0.0.1:{metrics_port}/metrics" in m for m in messages)
    finally:
        for proc in (streamer, fake):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        redis.stop()
