"""SIGINT while the sources are still connecting (an unreachable exchange) is a normal stop:
exit 0, no traceback."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time


def test_sigint_before_any_source_is_up_stops_cleanly(tmp_path) -> None:
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "streamer.toml"
    config.write_text(
        f'[[sources]]\nname = "linear"\ntype = "bybit.linear"\nsymbols = ["BTCUSDT"]\n'
        f'streams = ["trades"]\nurl = "ws://127.0.0.1:{port}/v5/public/linear"\n'
        f'rest_url = "http://127.0.0.1:{port}"\n\n'
        '[[sinks]]\ntype = "console"\n'
    )
    proc = subprocess.Popen([sys.executable, "-m", "streamer", "run", "-c", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        assert proc.stderr is not None
        for line in proc.stderr:  # wait until it is retrying the connection
            if "cannot connect" in line or time.monotonic() > deadline:
                break
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert "Traceback" not in err, err
    assert proc.returncode == 0, err
