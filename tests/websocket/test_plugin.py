"""The plugin registers the sink type and the ``tail`` command through the hooks."""

from __future__ import annotations

import importlib.metadata

import pluggy

from streamer import _hookspecs as hookspecs
from streamer_websocket import plugin, tail
from streamer_websocket.config import WebSocketConfig
from streamer_websocket.sink import WebSocketSink


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
    assert sinks == [("websocket", WebSocketConfig, WebSocketSink)]
    assert commands == [("tail", tail.HELP, tail.configure, tail.main)]
