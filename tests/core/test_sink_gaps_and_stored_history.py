"""What the core gives a sink that stores what it gets (streamer.NotesGaps and
streamer.HasStoredHistory): the sources' stream gaps with their place among the sink's
events (``Inbox.position`` / ``Inbox.taken_from``), and its stored history handed to the
transforms that read the same sources."""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import trio

from streamer import BaseTransform, Event, Inbox, StreamGap, Trade, hookimpl
from streamer.testing import running_pipeline


def trade(i: int) -> Trade:
    return Trade("linear", "BTCUSDT", 1_700_000_000_000 + i, "Buy", "100", "1", str(i))


@attrs.define
class NoOptions:
    pass


class GapNotingSink:
    """Keeps (taken_from, events) per ``get`` and (gap, position) per gap noted."""

    def __init__(self, config: object = None, context: object = None) -> None:
        self.batches: list[tuple[int, list[str]]] = []
        self.gaps: list[tuple[int, int]] = []

    def note_gap(self, gap: StreamGap, position: int) -> None:
        self.gaps.append((gap.since_ms, position))

    async def run(self, inbox: Inbox, *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while events := await inbox.get():
            self.batches.append((inbox.taken_from, [e.trade_id for e in events
                                                    if isinstance(e, Trade)]))


class FailingGapSink(GapNotingSink):
    def note_gap(self, gap: StreamGap, position: int) -> None:
        raise RuntimeError("no")


class Pass(BaseTransform):
    def __init__(self, config: object = None, context: object = None) -> None:
        self.context = context

    def process(self, batch: Sequence[Event]) -> list[Event]:
        return list(batch)


class Summaries:
    def __init__(self, name: str) -> None:
        self.name = name

    async def trades_summaries(self, channel: str, symbol: str,
                               ranges: Sequence[tuple[int, int]]) -> list[None]:
        return [None for _ in ranges]


class StoringSink(GapNotingSink):
    def __init__(self, config: object = None, context: object = None) -> None:
        super().__init__()
        assert context is not None
        self.stored_history = Summaries(context.name)  # type: ignore[attr-defined]


class Plugin:
    @staticmethod
    @hookimpl
    def streamer_register_sinks(register) -> None:  # type: ignore[no-untyped-def]
        register("test.gap_noting", NoOptions, GapNotingSink)
        register("test.gap_failing", NoOptions, FailingGapSink)
        register("test.storing", NoOptions, StoringSink)

    @staticmethod
    @hookimpl
    def streamer_register_transforms(register) -> None:  # type: ignore[no-untyped-def]
        register("test.pass", NoOptions, Pass)


def test_inbox_positions_count_every_event_queued_and_dropped() -> None:
    inbox = Inbox("x", maxsize=1, overflow="drop_oldest")
    inbox.put_nowait([trade(1), trade(2)])
    inbox.put_nowait([trade(3)])  # drops the first batch: its positions 0 and 1 are gone
    assert (inbox.position, inbox.dropped_events) == (3, 2)

    async def take() -> list[Event]:
        return await inbox.get()

    assert trio.run(take) == [trade(3)]
    assert inbox.taken_from == 2
    inbox.put_nowait([trade(4)])
    assert trio.run(take) == [trade(4)]
    assert (inbox.taken_from, inbox.position) == (3, 4)


PIPE = """
[[sources]]
name = "src"
type = "testing.scripted"
end_when_done = false

[[transforms]]
name = "t"
type = "test.pass"
inputs = ["src"]

[[sinks]]
name = "direct"
type = "test.gap_noting"
inputs = ["src"]

[[sinks]]
name = "through"
type = "test.gap_noting"
inputs = ["t"]

[[sinks]]
name = "both"
type = "test.gap_noting"
inputs = ["src", "t"]

[[sinks]]
name = "failing"
type = "test.gap_failing"
inputs = ["src"]

[[sinks]]
name = "plain"
type = "testing.collect"
inputs = ["src"]
"""


async def test_a_sink_that_notes_gaps_gets_each_once_with_its_place(plugin_manager,
                                                                     register_plugin) -> None:
    register_plugin(Plugin())
    with trio.fail_after(10):
        async with running_pipeline(PIPE, plugin_manager) as pipeline:
            src = pipeline.node("src")
            src.push([trade(1), trade(2)])
            src.push_gap(StreamGap("linear", ("BTCUSDT",), 10))
            src.push([trade(3)])
            src.push_gap(StreamGap("linear", ("BTCUSDT",), 20, closed=True))
            src.push([trade(4)])
            await pipeline.node("plain").wait_for(4)
            both = pipeline.node("both")
            while sum(len(ids) for _, ids in both.batches) < 8:
                await trio.sleep(0.01)
    # The position counts the events queued into that sink's inbox before the gap.
    assert pipeline.node("direct").gaps == [(10, 2), (20, 3)]
    assert pipeline.node("through").gaps == [(10, 2), (20, 3)]
    assert pipeline.node("both").gaps == [(10, 4), (20, 6)]  # each batch came twice
    # taken_from tells where each batch a sink took begins.
    for name, total in (("direct", 4), ("both", 8)):
        batches = pipeline.node(name).batches
        assert [start for start, _ in batches] == [
            sum(len(ids) for _, ids in batches[:i]) for i in range(len(batches))]
        assert sum(len(ids) for _, ids in batches) == total
    assert pipeline.metrics()["failing"]["errors"] == 2
    assert pipeline.metrics()["src"].get("errors", 0) == 0


STORED = """
[[sources]]
name = "a"
type = "testing.scripted"

[[sources]]
name = "b"
type = "testing.scripted"

[[transforms]]
name = "t"
type = "test.pass"
inputs = ["a"]

[[transforms]]
name = "u"
type = "test.pass"
inputs = ["t", "b"]

[[sinks]]
name = "stores_a"
type = "test.storing"
inputs = ["a"]

[[sinks]]
name = "stores_b"
type = "test.storing"
inputs = ["b"]

[[sinks]]
name = "stores_t"
type = "test.storing"
inputs = ["t"]

[[sinks]]
name = "noting_a"
type = "test.gap_noting"
inputs = ["a"]
"""


async def test_stored_history_goes_to_the_transforms_reading_a_source_the_sink_stores(
        plugin_manager, register_plugin) -> None:
    register_plugin(Plugin())
    async with running_pipeline(STORED, plugin_manager) as pipeline:
        t, u = pipeline.nodes["t"].context.history, pipeline.nodes["u"].context.history
    # stores_t takes a's events through a transform, which could have dropped some: not it.
    assert t.store_names == ["stores_a"]
    assert [s.name for s in t.stored] == ["stores_a"]
    assert u.store_names == ["stores_a", "stores_b"]
