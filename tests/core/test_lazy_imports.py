"""Loading the plugins and checking a configuration import no heavy dependency: each plugin's
registration module imports its config classes only, its factories import the node's module
(redis-py, nats-py, pyarrow, zstandard, websockets, trio-websocket, ...) when the pipeline
builds it, and the core imports ``prometheus_client`` only when a run serves metrics.

Each check runs in a fresh interpreter (this one has imported everything) and reads its
``sys.modules``: a count of what was imported, not a timing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

#: Top-level packages and core modules that `streamer check` must not import.
HEAVY = {
    "redis", "nats", "pyarrow", "zstandard", "websockets", "trio_websocket", "wsproto",
    "prometheus_client", "pytest", "asyncio", "streamer.net", "streamer._metrics_http",
    "streamer._exposition",
}

#: A configuration with one node of every bundled type, and the metrics listener on.
EVERY_TYPE = """
[streamer]
metrics = "127.0.0.1:9464"

[[sources]]
name = "linear"
type = "bybit.linear"
symbols = ["BTCUSDT"]
capture_dir = "{tmp}/captures"

[[sources]]
name = "spot"
type = "bybit.spot"
symbols = ["BTCUSDT"]

[[sources]]
name = "replay"
type = "bybit.replay"
path = "{tmp}/captures"

[[sources]]
name = "bus"
type = "nats"

[[transforms]]
name = "klines"
type = "klines.from_trades"
inputs = ["linear"]

[[transforms]]
name = "passthrough"
type = "klines.passthrough"
inputs = ["spot"]

[[transforms]]
name = "verify"
type = "klines.verify"
inputs = ["klines"]

[[sinks]]
type = "console"
inputs = ["klines"]

[[sinks]]
type = "redis"
inputs = ["klines"]

[[sinks]]
type = "storage"
inputs = ["klines"]

[[sinks]]
type = "nats"
inputs = ["klines"]

[[sinks]]
type = "files"
inputs = ["klines"]
dir = "{tmp}/files"

[[sinks]]
type = "websocket"
inputs = ["klines", "passthrough", "replay", "bus", "verify"]
port = 0
"""

_PROBE = """
import json, sys
from streamer._cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def imported_by(*argv: str) -> tuple[int, set[str], str]:
    """Exit code, the modules imported and stdout of ``streamer ARGV`` in a new process."""
    done = subprocess.run([sys.executable, "-c", _PROBE, *argv], capture_output=True,
                          text=True, timeout=60)
    *out, last = done.stdout.strip().splitlines()
    report = json.loads(last)
    return report["code"], set(report["modules"]), "\n".join(out) + done.stderr


def heavy_in(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m in HEAVY or m.split(".")[0] in HEAVY)


def test_check_of_every_bundled_type_imports_no_heavy_module(tmp_path: Path) -> None:
    config = tmp_path / "streamer.toml"
    config.write_text(EVERY_TYPE.format(tmp=tmp_path))
    code, modules, output = imported_by("check", "-c", str(config))
    assert code == 0, output
    for line in ("source    replay (bybit.replay)", "sink      websocket (websocket) <- "
                 "klines, passthrough, replay, bus, verify"):
        assert line in output  # every type was structured and validated
    assert heavy_in(modules) == []


def test_check_of_the_example_imports_no_heavy_module() -> None:
    example = Path(__file__).resolve().parents[2] / "streamer.toml.example"
    code, modules, output = imported_by("check", "-c", str(example))
    assert code == 0, output
    assert heavy_in(modules) == []


def test_import_streamer_imports_no_network_client_nor_prometheus() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import json, sys, streamer, streamer.wire, streamer.history, "
         "streamer.validators, streamer.intervals, streamer.clock; "
         "print(json.dumps(sorted(sys.modules)))"],
        capture_output=True, text=True, timeout=60, check=True)
    assert heavy_in(set(json.loads(done.stdout))) == []


def test_streamer_net_brings_websockets_along() -> None:
    """The other side of the split: what a plugin's node imports is there when it asks."""
    done = subprocess.run(
        [sys.executable, "-c", "import json, sys, streamer.net; "
         "print(json.dumps(sorted(sys.modules)))"],
        capture_output=True, text=True, timeout=60, check=True)
    modules = set(json.loads(done.stdout))
    assert {"websockets", "streamer.net._websocket", "streamer.net._tls"} <= modules
