"""The optional capabilities of the plugin contract (``streamer.HasHistory`` ...): each is found
through its declared protocol and nothing else, and one declared in a shape the core cannot use
is refused when the pipeline is built (config classes: when the type is registered), naming it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import attrs
import pytest
import trio

import streamer
from streamer import Event, StreamGap, Trade, hookimpl
from streamer._api import CAPABILITIES, NODE_CAPABILITIES, check_capabilities
from streamer._config import load_config_text
from streamer._plugins import PluginError
from streamer._runtime import Pipeline
from streamer.testing import CollectingSink, running_pipeline

DOCS = Path(__file__).resolve().parents[2] / "docs"


class Clock(trio.abc.Clock):
    def start_clock(self) -> None: ...
    def current_time(self) -> float: return 0.0
    def deadline_to_sleep_time(self, deadline: float) -> float: return 0.0


class Transform(streamer.BaseTransform):
    def process(self, batch: Sequence[Event]) -> list[Event]:
        return []


class Gaps(Transform):
    def on_gap(self, gap: StreamGap) -> list[Event]:
        return []


class Validating:
    def validate(self, environ: Mapping[str, str]) -> list[str]:
        return []


class Lines:
    def check_lines(self) -> list[str]:
        return []


class History:
    history = object()


class GapNoting:
    def note_gap(self, gap: StreamGap, position: int) -> None:
        pass


class Stored:
    async def trades_summaries(self, channel: str, symbol: str,
                               ranges: Sequence[tuple[int, int]]) -> list[None]:
        return [None for _ in ranges]


class StoringSink:
    stored_history = Stored()


class Busy:
    busy_with: str | None = None


class Holding:
    def held_events(self) -> int:
        return 0


class Clocked:
    trio_clock = Clock()


class Flushing:
    shutdown_timeout = 7.5


class Dropping:
    default_overflow: ClassVar[str] = "drop_oldest"


#: One object per capability, holding it and no other.
HOLDERS: dict[type, object] = {
    streamer.HasHistory: History(), streamer.DrivesClock: Clocked(),
    streamer.HandlesGaps: Gaps(), streamer.NotesGaps: GapNoting(),
    streamer.HasStoredHistory: StoringSink(), streamer.ReportsBusy: Busy(),
    streamer.HoldsEvents: Holding(), streamer.Validates: Validating(),
    streamer.HasCheckLines: Lines(),
    streamer.HasShutdownTimeout: Flushing(), streamer.HasDefaultOverflow: Dropping,
}


def test_each_capability_is_public_documented_and_found_through_its_protocol() -> None:
    assert set(HOLDERS) == set(CAPABILITIES)
    hooks = (DOCS / "plugin_hooks.md").read_text()
    for protocol, holder in HOLDERS.items():
        assert protocol.__name__ in streamer.__all__
        assert f"### `streamer.{protocol.__name__}`" in hooks
        assert check_capabilities(holder) == [protocol]
        assert [p for p in CAPABILITIES if isinstance(holder, p)] == [protocol]
    assert check_capabilities(Transform()) == []


class Misspelt(Transform):
    def on_gaps(self, gap: StreamGap) -> list[Event]:
        return []

    def check_line(self) -> list[str]:
        return []

    busywith = "a write"
    held = 3
    trio_clok = Clock()


def test_a_misspelt_member_is_no_capability() -> None:
    assert check_capabilities(Misspelt()) == []


# -- a capability in a shape the core cannot use ------------------------------------------------


class GapWithoutArgument(Transform):
    def on_gap(self) -> list[Event]:
        return []


class AsyncGap(Transform):
    async def on_gap(self, gap: StreamGap) -> list[Event]:
        return []


class GapNotAMethod(Transform):
    on_gap = "later"


class ClockOfAnotherKind(Transform):
    trio_clock = "fast"


class AsyncHeld:
    async def held_events(self) -> int:
        return 0


class ValidateOfAnotherShape:
    def validate(self, environ: Mapping[str, str], strict: bool) -> list[str]:
        return []


class OverflowNotAPolicy:
    default_overflow: ClassVar[str] = "drop"


class GapNoteWithoutPosition:
    def note_gap(self, gap: StreamGap) -> None:
        pass


class SyncStored:
    def trades_summaries(self, channel: str, symbol: str,
                         ranges: Sequence[tuple[int, int]]) -> list[None]:
        return [None for _ in ranges]


class StoredNotAsync:
    stored_history = SyncStored()


STORED_NOT_ASYNC = StoredNotAsync()


@pytest.mark.parametrize(("obj", "message"), [
    (GapWithoutArgument(), "GapWithoutArgument.on_gap() -> list[Event] cannot be called "
                           "as HandlesGaps calls it: def on_gap(gap: StreamGap) -> list[Event]"),
    (AsyncGap(), "AsyncGap.on_gap is async; HandlesGaps wants a plain def on_gap(gap: StreamGap)"
                 " -> list[Event] (the core calls it without awaiting)"),
    (GapNotAMethod(), "GapNotAMethod.on_gap is not a method; HandlesGaps wants def on_gap(gap: "
                      "StreamGap) -> list[Event]"),
    (ClockOfAnotherKind(), "ClockOfAnotherKind.trio_clock must be a trio.abc.Clock "
                           "(DrivesClock), got 'fast'"),
    (AsyncHeld(), "AsyncHeld.held_events is async; HoldsEvents wants a plain def "
                  "held_events() -> int (the core calls it without awaiting)"),
    (ValidateOfAnotherShape, "ValidateOfAnotherShape.validate(environ: Mapping[str, str], "
                             "strict: bool) -> list[str] cannot be called as Validates calls it: "
                             "def validate(environ: Mapping[str, str]) -> list[str]"),
    (GapNoteWithoutPosition(), "GapNoteWithoutPosition.note_gap(gap: StreamGap) -> None cannot "
                               "be called as NotesGaps calls it: def note_gap(gap: StreamGap, "
                               "position: int) -> None"),
    (STORED_NOT_ASYNC, "StoredNotAsync.stored_history must be a streamer.history.StoredHistory "
                       "(an async trades_summaries) (HasStoredHistory), got "
                       f"{STORED_NOT_ASYNC.stored_history!r}"),
    (OverflowNotAPolicy, "OverflowNotAPolicy.default_overflow must be 'block' or 'drop_oldest' "
                         "(HasDefaultOverflow), got 'drop'"),
])
def test_a_capability_the_core_cannot_use_is_refused(obj: object, message: str) -> None:
    with pytest.raises(TypeError, match=re.escape(message) + "$"):
        check_capabilities(obj)


@attrs.define
class NoOptions:
    pass


class Plugin:
    @staticmethod
    @hookimpl
    def streamer_register_transforms(register) -> None:  # type: ignore[no-untyped-def]
        register("test.gap_without_argument", NoOptions, lambda c, ctx: GapWithoutArgument())
        register("test.misspelt", NoOptions, lambda c, ctx: Misspelt())


PIPE = """
[[sources]]
name = "src"
type = "testing.scripted"

[[transforms]]
name = "t"
type = "{transform}"

[[sinks]]
name = "out"
type = "testing.collect"
inputs = ["src", "t"]
"""


def test_the_pipeline_refuses_a_node_with_a_broken_capability(plugin_manager,
                                                               register_plugin) -> None:
    register_plugin(Plugin())
    config = load_config_text(PIPE.format(transform="test.gap_without_argument"),
                              plugin_manager, environ={})
    with pytest.raises(TypeError, match=r"^GapWithoutArgument\.on_gap\(\) -> list\[Event\] "
                                        "cannot be called as HandlesGaps calls it"):
        Pipeline(config, plugin_manager)


async def test_a_misspelt_gap_handler_is_not_called(plugin_manager, register_plugin) -> None:
    register_plugin(Plugin())
    trade = Trade("linear", "BTCUSDT", 1_700_000_000_000, "Buy", "100", "1", "1")
    async with running_pipeline(PIPE.format(transform="test.misspelt"),
                                plugin_manager) as pipeline:
        src, out = pipeline.node("src"), pipeline.node("out")
        src.push_gap(StreamGap("linear", ("BTCUSDT",), 5))
        src.push([trade])
        assert await out.wait_for(1) == [trade]
    assert pipeline.nodes["t"].context.metrics.counts["errors"] == 0


class SinkWithOtherMeanings(CollectingSink):
    """Members named like capabilities of other kinds of node mean something else here."""

    history = ("a", "plain", "attribute")  # not a source's History
    on_gap = None
    trio_clock = "not a clock"


class Sinks:
    @staticmethod
    @hookimpl
    def streamer_register_sinks(register) -> None:  # type: ignore[no-untyped-def]
        register("test.other_meanings", NoOptions, lambda c, ctx: SinkWithOtherMeanings())


async def test_only_the_capabilities_of_a_node_s_kind_are_looked_for(plugin_manager,
                                                                     register_plugin) -> None:
    register_plugin(Sinks())
    trade = Trade("linear", "BTCUSDT", 1_700_000_000_000, "Buy", "100", "1", "1")
    toml = PIPE.format(transform="test.misspelt").replace("testing.collect",
                                                          "test.other_meanings")
    register_plugin(Plugin())
    async with running_pipeline(toml, plugin_manager) as pipeline:
        pipeline.node("src").push([trade])
        assert await pipeline.node("out").wait_for(1) == [trade]
    assert check_capabilities(SinkWithOtherMeanings(), NODE_CAPABILITIES["sink"]) == []
    assert pipeline.trio_clock() is None


def test_a_config_class_with_a_broken_capability_is_refused_at_registration(
        plugin_manager, register_plugin) -> None:
    class Sinks:
        @staticmethod
        @hookimpl
        def streamer_register_sinks(register) -> None:  # type: ignore[no-untyped-def]
            register("test.bad_overflow", attrs.define(OverflowNotAPolicy), lambda c, ctx: None)

    register_plugin(Sinks(), "bad")
    with pytest.raises(PluginError, match=re.escape(
            "plugin 'bad': config class for sink 'test.bad_overflow': OverflowNotAPolicy."
            "default_overflow must be 'block' or 'drop_oldest' (HasDefaultOverflow), "
            "got 'drop'")):
        plugin_manager.sinks()

