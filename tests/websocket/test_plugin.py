"""The plugin registers the sink type and the ``tail`` command through the hooks."""

from __future__ import annotations

import argparse
import importlib.metadata

import pluggy

from streamer import _hookspecs as hookspecs
from streamer.testing import config_errors
from streamer_websocket import plugin, tail_cli
from streamer_websocket.config import WebSocketConfig


def test_entry_point_is_published() -> None:
    entry_points = importlib.metadata.entry_points(group="streamer.plugins")
    assert any(ep.name == "websocket" and ep.value == "streamer_websocket.plugin"
               for ep in entry_points)


def test_hooks_register_sink_and_command() -> None:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(plugin)
    sinks: list[tuple] = []
    commands: list[tuple] = []
    pm.hook.streamer_register_sinks(register=lambda *a: sinks.append(a))
    pm.hook.streamer_register_commands(register=lambda *a: commands.append(a))
    assert sinks == [("websocket", WebSocketConfig, plugin.make_websocket)]
    [(name, help, configure, _main)] = commands
    assert (name, help) == ("tail", "connect to a websocket sink and print what it sends")
    parser = argparse.ArgumentParser()
    configure(parser)
    args = parser.parse_args(["--json", "--count", "3", "--symbol", "BTCUSDT"])
    assert (args.url, args.format, args.count, args.symbols) == (
        tail_cli.DEFAULT_URL, "json", 3, ["BTCUSDT"])


def test_every_bad_option_is_reported_with_its_path(plugin_manager):
    """Field validators: two bad options in one streamer.toml are both reported."""

    toml = """
[[sources]]
name = "src"
type = "testing.scripted"

[[sinks]]
type = "websocket"
port = 70000
max_clients = 0
tls_certfile = "cert.pem"
max_unauthenticated_per_address = 9
trusted_proxies = ["10.0.0.0/8", "10.0.0.1/8"]
"""
    assert config_errors(toml, plugin_manager) == [
        "s.toml: sinks[0].port: expected 0 to 65535, got 70000",
        "s.toml: sinks[0].max_clients: expected at least 1, got 0",
        "s.toml: sinks[0].max_unauthenticated_per_address: expected at most "
        "max_unauthenticated / 8 (8), got 9: fewer than 8 addresses must never fill the pool",
        "s.toml: sinks[0].trusted_proxies: '10.0.0.1/8' is not an address or network "
        "(10.0.0.1/8 has host bits set)",
        "s.toml: sinks[0].tls_keyfile: tls_certfile and tls_keyfile must be set together",
    ]
