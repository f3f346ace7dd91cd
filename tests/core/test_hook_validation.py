"""Plugins are checked against the hook specifications when they are registered."""

from __future__ import annotations

import types

import pytest

from streamer import DROP, hookimpl
from streamer._events import Trade
from streamer._plugins import PluginError, PluginManager


def _plugin(**hooks: object) -> types.ModuleType:
    """A plugin module holding ``hooks``, as an entry point would load it."""
    module = types.ModuleType("plugin")
    for name, hook in hooks.items():
        setattr(module, name, hook)
    return module


def test_misspelt_hook_name_is_refused_with_the_known_names() -> None:
    @hookimpl
    def streamer_register_sink(register):  # type: ignore[no-untyped-def]
        raise AssertionError("never called")

    pm = PluginManager()
    with pytest.raises(PluginError) as info:
        pm.register(_plugin(streamer_register_sink=streamer_register_sink), "typo")
    message = str(info.value)
    assert "'typo'" in message
    assert "streamer_register_sink" in message
    assert "streamer_register_sinks" in message
    # The refused plugin is not left half-registered.
    assert "typo" not in [info.name for info in pm.plugins()]


def test_argument_no_spec_has_is_refused() -> None:
    @hookimpl
    def streamer_transform_event(evt, source):  # type: ignore[no-untyped-def]
        return None

    pm = PluginManager()
    with pytest.raises(PluginError, match="evt"):
        pm.register(_plugin(streamer_transform_event=streamer_transform_event), "badargs")


def test_event_hook_declaring_fewer_arguments_is_called_with_them() -> None:
    seen: list[object] = []

    @hookimpl
    def streamer_transform_event(event):  # type: ignore[no-untyped-def]
        seen.append(event)
        return DROP

    pm = PluginManager()
    pm.register(_plugin(streamer_transform_event=streamer_transform_event), "short")
    [fn] = pm.event_transformers()
    trade = Trade(channel="linear", symbol="BTCUSDT", ts=1, side="Buy", price="2", size="1",
                  trade_id="t1")
    assert fn(trade, "linear") is DROP
    assert seen == [trade]


def test_register_hooks_are_called_through_pluggy_and_attributed() -> None:
    import attrs

    @attrs.define
    class Options:
        pass

    @hookimpl
    def streamer_register_sinks(register):  # type: ignore[no-untyped-def]
        register("one", Options, object)

    @hookimpl
    def streamer_register_sources(register):  # type: ignore[no-untyped-def]
        register("two", Options, object)

    pm = PluginManager()
    pm.register(_plugin(streamer_register_sinks=streamer_register_sinks), "a")
    pm.register(_plugin(streamer_register_sources=streamer_register_sources), "b")
    assert pm.sinks()["one"].plugin == "a"
    assert pm.sources()["two"].plugin == "b"
