"""The fan-out runtime: inline routing, sink isolation, restarts, drops, graceful shutdown."""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import pytest
import trio

import streamer
from streamer import BaseTransform, Event, FatalError, Kline, StreamGap, Trade, hookimpl
from streamer.testing import running_pipeline


def trade(i: int, symbol: str = "BTCUSDT", channel: str = "linear") -> Trade:
    return Trade(channel, symbol, 1_700_000_000_000 + i, "Buy", str(100 + i), "1", str(i))


PIPE = """
[[sources]]
name = "src"
type = "testing.scripted"
{sinks}
"""


def sink(name: str, **options: object) -> str:
    lines = [f'[[sinks]]\nname = "{name}"\ntype = "testing.collect"']
    lines += [f"{k} = {v!r}".replace("'", '"') for k, v in options.items()]
    return "\n".join(lines) + "\n"


async def test_every_sink_gets_every_batch_and_shutdown_flushes(plugin_manager) -> None:
    with trio.fail_after(10):
        async with running_pipeline(PIPE.format(sinks=sink("a") + sink("b")),
                                    plugin_manager) as pipeline:
            src = pipeline.node("src")
            for i in range(50):
                src.push([trade(i)])
            await pipeline.node("a").wait_for(50)
            await pipeline.node("b").wait_for(50)
        assert pipeline.node("a").events == pipeline.node("b").events
        assert [e.trade_id for e in pipeline.node("a").events] == [str(i) for i in range(50)]
        assert pipeline.node("a").flushed and pipeline.node("b").flushed


async def test_pipeline_ends_when_sources_end_and_sinks_drain(plugin_manager) -> None:
    from streamer._config import load_config_text
    from streamer._runtime import Pipeline

    config = load_config_text(PIPE.format(sinks=sink("slow", delay=0.01)), plugin_manager,
                              environ={})
    pipeline = Pipeline(config, plugin_manager)
    src = pipeline.node("src")
    for i in range(20):
        src.push([trade(i)])
    src.finish()
    with trio.fail_after(10):
        await pipeline.run()  # returns by itself: the source ended, the sink drained
    assert len(pipeline.node("slow").events) == 20
    assert pipeline.node("slow").flushed


async def test_raising_sink_is_restarted_and_others_unaffected(
    plugin_manager, autojump_clock
) -> None:
    toml = PIPE.format(sinks=sink("bad", fail_times=3) + sink("good"))
    with trio.fail_after(120):
        async with running_pipeline(toml, plugin_manager) as pipeline:
            src = pipeline.node("src")
            for i in range(20):
                src.push([trade(i)])
                await trio.sleep(1.0)
            await pipeline.node("good").wait_for(20)
            await pipeline.node("bad").wait_for(lambda ev: bool(ev) and ev[-1].trade_id == "19")
    bad = pipeline.node("bad")
    assert bad.runs == 4  # three failures, three restarts with backoff
    assert pipeline.metrics()["bad"]["restarts"] == 3
    # Deliveries 1-3 raise: they hold trades 0, 1 and 2 (one pushed a second; the restarts
    # come within the backoff caps 0.5 s and 1 s, before the next push), which are lost.
    # Trades 3-19 arrive once each, in order.
    assert [e.trade_id for e in bad.events] == [str(i) for i in range(3, 20)]
    assert pipeline.metrics()["bad"]["lost_on_restart"] == 3
    assert len(pipeline.node("good").events) == 20


async def test_slow_sink_with_drop_oldest_never_blocks_source(
    plugin_manager, autojump_clock
) -> None:
    toml = PIPE.format(sinks=sink("slow", delay=1.0, queue_size=3, overflow="drop_oldest")
                       + sink("fast"))
    with trio.fail_after(60):
        async with running_pipeline(toml, plugin_manager) as pipeline:
            src = pipeline.node("src")
            start = trio.current_time()
            for i in range(100):
                src.push([trade(i)])
            await pipeline.node("fast").wait_for(100)
            # 100 batches reached the fast sink without the slow one costing any time.
            assert trio.current_time() - start < 0.5
            slow_inbox = pipeline.nodes["slow"].inbox
            assert slow_inbox.dropped_batches > 0
    slow = pipeline.node("slow").events
    assert len(slow) + slow_inbox.dropped_events == 100
    assert slow[-1].trade_id == "99"  # the newest batches survive, the oldest were dropped
    assert pipeline.metrics()["slow"]["inbox_dropped_batches"] == slow_inbox.dropped_batches


async def test_block_overflow_applies_backpressure(plugin_manager, autojump_clock) -> None:
    toml = PIPE.format(sinks=sink("slow", delay=1.0, queue_size=2, overflow="block"))
    with trio.fail_after(600):
        async with running_pipeline(toml, plugin_manager) as pipeline:
            src = pipeline.node("src")
            for i in range(10):
                src.push([trade(i)])
            await pipeline.node("slow").wait_for(10)
    assert [e.trade_id for e in pipeline.node("slow").events] == [str(i) for i in range(10)]
    assert pipeline.nodes["slow"].inbox.dropped_batches == 0


class Doubler(BaseTransform):
    """Emits a kline per trade; raises on a trade with id "boom"."""

    def __init__(self, config: object, context: object) -> None:
        self.seen = 0

    def process(self, batch: Sequence[Event]) -> list[Event]:
        self.seen += 1
        out: list[Event] = []
        for e in batch:
            if isinstance(e, Trade):
                if e.trade_id == "boom":
                    raise ValueError("boom")
                p = float(e.price)
                out.append(Kline(e.channel, e.symbol, 60_000, e.ts, p, p, p, p, 1.0, 1))
        return out


@attrs.define
class NoOptions:
    pass


class TransformPlugin:
    @staticmethod
    @hookimpl
    def streamer_register_transforms(register) -> None:  # type: ignore[no-untyped-def]
        register("test.double", NoOptions, Doubler)


async def test_transforms_run_inline_and_a_failing_batch_is_isolated(
    plugin_manager, register_plugin
) -> None:
    register_plugin(TransformPlugin())
    toml = PIPE.format(sinks='[[transforms]]\nname = "k"\ntype = "test.double"\n'
                       + sink("klines_only", inputs=["k"]) + sink("all"))
    with trio.fail_after(10):
        async with running_pipeline(toml, plugin_manager) as pipeline:
            src = pipeline.node("src")
            src.push([trade(1)])
            src.push([Trade("linear", "X", 1, "Buy", "1", "1", "boom")])
            src.push([trade(2)])
            await pipeline.node("all").wait_for(5)
            await pipeline.node("klines_only").wait_for(2)
    assert [type(e).__name__ for e in pipeline.node("klines_only").events] == ["Kline", "Kline"]
    kinds = [type(e).__name__ for e in pipeline.node("all").events]
    assert sorted(kinds) == ["Kline", "Kline", "Trade", "Trade", "Trade"]
    assert pipeline.metrics()["k"]["errors"] == 1


class GapAware(Doubler):
    """Also answers stream gaps: a flat kline per gap symbol when the gap closes."""

    def on_gap(self, gap: StreamGap) -> list[Event]:
        if not gap.closed:
            return []
        return [Kline(gap.channel, s, 60_000, gap.since_ms, 0, 0, 0, 0, 0, 0, partial=True)
                for s in gap.symbols]


class GapPlugin:
    @staticmethod
    @hookimpl
    def streamer_register_transforms(register) -> None:  # type: ignore[no-untyped-def]
        register("test.gap", NoOptions, GapAware)


async def test_stream_gaps_reach_transforms_not_sinks(plugin_manager, register_plugin) -> None:
    register_plugin(GapPlugin())
    toml = PIPE.format(sinks='[[transforms]]\nname = "k"\ntype = "test.gap"\n' + sink("out"))
    with trio.fail_after(10):
        async with running_pipeline(toml, plugin_manager) as pipeline:
            src = pipeline.node("src")
            src.push_gap(StreamGap("linear", ("BTCUSDT", "ETHUSDT"), 5))
            src.push([trade(1)])
            src.push_gap(StreamGap("linear", ("BTCUSDT", "ETHUSDT"), 5, closed=True))
            events = await pipeline.node("out").wait_for(4)
    assert [(type(e).__name__, e.symbol) for e in events] == [
        ("Trade", "BTCUSDT"), ("Kline", "BTCUSDT"),  # the trade and its kline
        ("Kline", "BTCUSDT"), ("Kline", "ETHUSDT"),  # what the closed gap produced
    ]


class EventHook:
    @staticmethod
    @hookimpl
    def streamer_transform_event(event, source):  # type: ignore[no-untyped-def]
        if isinstance(event, Trade) and event.symbol == "DROPME":
            return streamer.DROP
        if isinstance(event, Trade):
            return Trade(event.channel, event.symbol.lower(), event.ts, event.side,
                         event.price, event.size, f"{source}:{event.trade_id}")
        return None


async def test_per_event_hook_rewrites_and_drops(plugin_manager, register_plugin) -> None:
    register_plugin(EventHook())
    with trio.fail_after(10):
        async with running_pipeline(PIPE.format(sinks=sink("out")), plugin_manager) as pipeline:
            pipeline.node("src").push([trade(1), trade(2, symbol="DROPME"), trade(3)])
            events = await pipeline.node("out").wait_for(2)
    assert [(e.symbol, e.trade_id) for e in events] == [("btcusdt", "src:1"), ("btcusdt", "src:3")]


class FatalSinkPlugin:
    class Sink:
        def __init__(self, config: object, context: object) -> None:
            pass

        async def run(self, inbox, *, task_status=trio.TASK_STATUS_IGNORED):  # type: ignore[no-untyped-def]
            raise FatalError("port 9500 is already in use")

    @staticmethod
    @hookimpl
    def streamer_register_sinks(register) -> None:  # type: ignore[no-untyped-def]
        register("test.fatal", NoOptions, FatalSinkPlugin.Sink)


async def test_fatal_error_stops_the_pipeline(plugin_manager, register_plugin) -> None:
    register_plugin(FatalSinkPlugin())
    from streamer._config import load_config_text
    from streamer._runtime import Pipeline

    config = load_config_text(PIPE.format(sinks='[[sinks]]\ntype = "test.fatal"\n'),
                              plugin_manager, environ={})
    pipeline = Pipeline(config, plugin_manager)
    with trio.fail_after(10), pytest.RaisesGroup(
        pytest.RaisesExc(FatalError, match="already in use"), flatten_subgroups=True
    ):
        await pipeline.run()
