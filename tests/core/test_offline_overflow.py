"""A source declares whether it is live; when none is, sinks that did not choose their
``overflow`` block instead of dropping, so a pipeline reading stored data loses nothing.

``testing.stored`` is ``testing.scripted`` registered with ``live=False`` (as ``bybit.replay``
and the ``nats`` source are). Runs are on trio's MockClock.
"""

from __future__ import annotations

import logging
import re
from typing import ClassVar

import attrs
import pytest
import trio

from streamer import BaseTransform, Trade, hookimpl
from streamer._config import load_config_text
from streamer._plugins import PluginError
from streamer._runtime import Pipeline


def trade(i: int) -> Trade:
    return Trade("linear", "BTCUSDT", 1_700_000_000_000 + i, "Buy", "100", "1", str(i))


@attrs.define
class DroppingByDefault:
    """A sink type whose inbox drops by default, as the console's does."""

    default_overflow: ClassVar[str] = "drop_oldest"


class SlowSink:
    """Takes a batch, then spends 1 s (virtual) on it: far slower than the source."""

    def __init__(self, config: object, context: object) -> None:
        self.events: list[Trade] = []

    async def run(self, inbox, *, task_status=trio.TASK_STATUS_IGNORED):  # type: ignore[no-untyped-def]
        task_status.started()
        while events := await inbox.get():
            await trio.sleep(1)
            self.events.extend(events)


class Plugin:
    @staticmethod
    @hookimpl
    def streamer_register_sinks(register) -> None:  # type: ignore[no-untyped-def]
        register("test.slow", DroppingByDefault, SlowSink)


def pipeline_toml(source_type: str, overflow: str | None = None) -> str:
    chosen = f'overflow = "{overflow}"\n' if overflow else ""
    return (f'[[sources]]\nname = "src"\ntype = "{source_type}"\n\n'
            f'[[sinks]]\nname = "slow"\ntype = "test.slow"\nqueue_size = 2\n{chosen}')


@pytest.mark.parametrize(("source_type", "overflow", "expected"), [
    ("testing.stored", None, "block"),  # no live source: block
    ("testing.scripted", None, "drop_oldest"),  # a live source: the type's default
    ("testing.stored", "drop_oldest", "drop_oldest"),  # chosen in the table: kept
])
def test_overflow_of_a_sink_follows_the_sources(plugin_manager, register_plugin, caplog,
                                                source_type, overflow, expected):
    register_plugin(Plugin())
    config = load_config_text(pipeline_toml(source_type, overflow), plugin_manager,
                              environ={})
    with caplog.at_level(logging.INFO, logger="streamer.runtime"):
        pipeline = Pipeline(config, plugin_manager)
    assert pipeline.nodes["slow"].inbox.overflow == expected
    notes = [r.getMessage() for r in caplog.records if "no live source" in r.getMessage()]
    assert notes == ([
        "no live source, only stored data (src: testing.stored): sink(s) slow wait when full "
        "instead of dropping (their tables do not set overflow)"] if expected != overflow
        and overflow is None and source_type == "testing.stored" else [])


@pytest.mark.parametrize("source_type", ["testing.stored", "testing.scripted"])
async def test_a_slow_sink_behind_a_source_of_stored_data_gets_every_event(
        plugin_manager, register_plugin, autojump_clock, source_type):
    register_plugin(Plugin())
    config = load_config_text(pipeline_toml(source_type), plugin_manager, environ={})
    pipeline = Pipeline(config, plugin_manager)
    source = pipeline.node("src")
    for i in range(50):  # 50 batches at once into an inbox of 2
        source.push([trade(i)])
    source.finish()
    await pipeline.run()  # until the source has ended and the sink has drained
    got = [t.trade_id for t in pipeline.node("slow").events]
    if source_type == "testing.stored":
        assert got == [str(i) for i in range(50)]
        assert pipeline.losses() == {}
    else:
        # The same run from a live source keeps the type's drop_oldest (as before the fix):
        # how many batches the sink takes before the rest arrive depends on trio's scheduling
        # order, but every event is either delivered or counted.
        dropped = pipeline.losses()["slow"]["inbox_dropped_events"]
        assert dropped > 40
        assert len(got) + dropped == 50
        assert got[-1] == "49" and got == sorted(got, key=int)  # the oldest were dropped


def test_live_is_declared_by_sources_only_and_is_a_bool(plugin_manager, register_plugin):
    class SinkSaysLive:
        @staticmethod
        @hookimpl
        def streamer_register_sinks(register) -> None:  # type: ignore[no-untyped-def]
            register("test.sink_live", DroppingByDefault, SlowSink, live=False)

    class NotABool:
        @staticmethod
        @hookimpl
        def streamer_register_sources(register) -> None:  # type: ignore[no-untyped-def]
            register("test.maybe", DroppingByDefault, SlowSink, live="no")

    register_plugin(SinkSaysLive(), "sink_says_live")
    with pytest.raises(PluginError, match=re.escape(
            "live= is declared by sources only, not by sink 'test.sink_live'")):
        plugin_manager.sinks()
    plugin_manager.unregister("sink_says_live")
    register_plugin(NotABool(), "not_a_bool")
    with pytest.raises(PluginError, match=re.escape(
            "source 'test.maybe': live must be True or False, got 'no'")):
        plugin_manager.sources()


def test_streamer_plugins_lists_a_source_that_is_not_live(plugin_manager):
    types = {t for info in plugin_manager.plugins() for t in info.types}
    assert "source:testing.stored (not live: reads stored data)" in types
    assert "source:testing.scripted" in types
    assert "source:bybit.replay (not live: reads stored data)" in types
    assert "source:nats (not live: reads stored data)" in types
    assert "source:bybit.linear" in types


class Passing(BaseTransform):
    """Hands every batch on as it is."""

    def __init__(self, config: object, context: object) -> None:
        pass

    def process(self, batch):  # type: ignore[no-untyped-def]
        return list(batch)


class PassingPlugin:
    @staticmethod
    @hookimpl
    def streamer_register_transforms(register) -> None:  # type: ignore[no-untyped-def]
        register("test.pass", DroppingByDefault, Passing)


def test_context_live_input_says_whether_a_live_source_is_upstream(
        plugin_manager, register_plugin):
    """Through transforms, per node: what a sink with a buffer of its own reads to wait for
    room instead of dropping (the redis, storage and nats sinks)."""
    register_plugin(Plugin())
    register_plugin(PassingPlugin())
    toml = """
[[sources]]
name = "live"
type = "testing.scripted"

[[sources]]
name = "stored"
type = "testing.stored"

[[transforms]]
name = "pass"
type = "test.pass"
inputs = ["stored"]

[[sinks]]
name = "from_live"
type = "test.slow"
inputs = ["live"]

[[sinks]]
name = "from_stored"
type = "test.slow"
inputs = ["pass"]

[[sinks]]
name = "from_both"
type = "test.slow"
inputs = ["pass", "live"]
"""
    pipeline = Pipeline(load_config_text(toml, plugin_manager, environ={}), plugin_manager)
    assert {name: node.context.live_input for name, node in pipeline.nodes.items()} == {
        "live": True, "stored": False, "pass": False,
        "from_live": True, "from_stored": False, "from_both": True}
