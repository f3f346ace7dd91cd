"""Loading the plugins and checking a configuration import no heavy dependency: each plugin's
registration module imports its config classes only, its factories import the node's module
(trio, redis-py, nats-py, psycopg, pyarrow, zstandard, websockets, trio-websocket, ...) when
the pipeline builds it, a plugin's command imports its module when it is the chosen command,
and the core imports trio and its runtime only for ``run``, ``prometheus_client`` only when a
run serves metrics.

Each check runs in a fresh interpreter (this one has imported everything) and reads its
``sys.modules``: a count of what was imported, not a timing."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

#: Packages and core modules that neither `streamer check` nor ``import streamer`` imports (a
#: name stands for its submodules too): the nodes' clients and libraries, the metrics server.
CLIENTS = {
    "redis", "nats", "psycopg", "pyarrow", "zstandard", "websockets", "trio_websocket",
    "wsproto", "prometheus_client", "pytest", "asyncio", "streamer.net",
    "streamer._metrics_http", "streamer._exposition",
}
#: What `streamer check` does not import either: trio (the nodes and ``run`` need it,
#: validating a file does not), msgspec with the events, the core's runtime.
HEAVY = CLIENTS | {"trio", "msgspec", "streamer._runtime", "streamer._inbox",
                   "streamer._events"}

#: The bundled plugins' modules that a built node or a chosen command needs, registering
#: and ``streamer check`` never: the aggregator's hot path, its backfill and the verifier,
#: the sources and sinks, the Bybit simulator and the commands' modules.
NODE_MODULES = {
    "streamer_aggregate.transform", "streamer_aggregate.aggregator",
    "streamer_aggregate.backfill", "streamer_aggregate.verify", "streamer_aggregate.books_top",
    "streamer_aggregate.passthrough", "streamer_bybit.source", "streamer_bybit.replay",
    "streamer_bybit.simulator", "streamer_console.sink", "streamer_files.sink",
    "streamer_nats.sink", "streamer_nats.source", "streamer_nats.messages",
    "streamer_postgres.sink", "streamer_redis.sink", "streamer_redis.storage",
    "streamer_websocket.sink",
}
COMMAND_MODULES = {
    "migrate-env": "streamer_bybit.migrate_env", "demo": "streamer_bybit.demo",
    "db": "streamer_postgres.command", "export": "streamer_postgres.export",
    "tail": "streamer_websocket.tail_cli",
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


def heavy_in(modules: set[str], heavy: set[str] = HEAVY | NODE_MODULES
             | set(COMMAND_MODULES.values())) -> list[str]:
    """The modules of ``modules`` that are, or are below, one of ``heavy``."""
    def under(module: str) -> bool:
        parts = module.split(".")
        return any(".".join(parts[:n]) in heavy for n in range(1, len(parts) + 1))

    return sorted(m for m in modules if under(m))


def test_the_modules_named_exist() -> None:
    """A renamed module would make the checks below pass for nothing."""
    for name in sorted(NODE_MODULES | set(COMMAND_MODULES.values())):
        assert importlib.util.find_spec(name) is not None, name


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


def test_each_plugin_command_imports_its_module_only_when_chosen() -> None:
    code, modules, output = imported_by("plugins")
    assert code == 0, output
    assert "command:tail" in output and "command:demo" in output  # registered all the same
    assert heavy_in(modules) == []
    code, modules, output = imported_by("migrate-env", "/nonexistent/.env")
    assert code == 2 and "cannot read the file" in output, output
    assert heavy_in(modules) == ["streamer_bybit.migrate_env"]


def test_the_registration_surface_of_streamer_loads_no_trio() -> None:
    """What a plugin's registration module takes from ``streamer`` (names are loaded when
    asked for), and the other side: ``Inbox`` brings trio along."""
    probe = ("import json, sys; from streamer import Context, RegisterType, RegisterSource, "
             "RegisterCommand, hookimpl, Validates, HasCheckLines, redact_url; "
             "print(json.dumps(sorted(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60, check=True)
    assert heavy_in(set(json.loads(done.stdout))) == []
    probe = "import json, sys; from streamer import Inbox; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60, check=True)
    assert {"trio", "streamer._inbox"} <= set(json.loads(done.stdout))


def test_import_streamer_imports_no_network_client_nor_prometheus() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import json, sys, streamer, streamer.wire, streamer.history, "
         "streamer.validators, streamer.intervals, streamer.clock; "
         "print(json.dumps(sorted(sys.modules)))"],
        capture_output=True, text=True, timeout=60, check=True)
    assert heavy_in(set(json.loads(done.stdout)), CLIENTS) == []


def test_streamer_net_brings_websockets_along() -> None:
    """The other side of the split: what a plugin's node imports is there when it asks."""
    done = subprocess.run(
        [sys.executable, "-c", "import json, sys, streamer.net; "
         "print(json.dumps(sorted(sys.modules)))"],
        capture_output=True, text=True, timeout=60, check=True)
    modules = set(json.loads(done.stdout))
    assert {"websockets", "streamer.net._websocket", "streamer.net._tls"} <= modules
