"""An event hook (``streamer_transform_event``) that raises costs nothing but its own work.

Through the real pipeline (bybit.linear -> testing.collect), on a MockClock. The Bybit
source notes each batch as delivered (its gap-recovery mark) before the runtime applies the
hooks; before the fix, a hook's exception went back into the source, which failed and was
restarted, and the trades it had noted but never delivered were lost unreported.
"""

from __future__ import annotations

import logging

import trio
from faults.helpers import trade_ids
from pipelines import bybit_into_collect

from streamer import hookimpl
from streamer._events import Trade
from streamer.testing import running_pipeline

SYMBOLS = ["BTCUSDT", "ETHUSDT"]


class FailingHook:
    """Tags every trade's side with ``+hook``; raises the exception ``failing`` maps a trade
    id to instead."""

    def __init__(self) -> None:
        self.failing: dict[str, type[Exception]] = {}

    @hookimpl
    def streamer_transform_event(self, event, source):  # type: ignore[no-untyped-def]
        if not isinstance(event, Trade):
            return None
        exc = self.failing.get(event.trade_id)
        if exc is not None:
            raise exc(f"hook cannot take {event.trade_id}")
        return Trade(event.channel, event.symbol, event.ts, event.side + "+hook", event.price,
                     event.size, event.trade_id)


async def test_a_failing_event_hook_loses_no_event(
    fake_bybit, plugin_manager, register_plugin, autojump_clock, caplog
):
    caplog.set_level(logging.ERROR, logger="streamer.runtime")
    hook = FailingHook()
    register_plugin(hook, "failing-hook")
    toml = bybit_into_collect(fake_bybit, SYMBOLS)
    with trio.fail_after(600):  # virtual seconds
        async with running_pipeline(toml, plugin_manager) as pipeline:
            sink = pipeline.node("out")
            await fake_bybit.wait_subscribed("linear", [f"publicTrade.{s}" for s in SYMBOLS])
            for tick in range(30):
                for s in SYMBOLS:
                    made = fake_bybit.trade("linear", s, count=2)
                    # BTCUSDT: both trades of ticks 5..9 (10 in all); ETHUSDT: tick 7's two
                    if (s == "BTCUSDT" and 5 <= tick < 10) or (s == "ETHUSDT" and tick == 7):
                        exc = RuntimeError if s == "BTCUSDT" else KeyError
                        hook.failing.update({t["i"]: exc for t in made})
                await trio.sleep(0.2)
            last = {s: fake_bybit.history("linear", s)[-1]["i"] for s in SYMBOLS}
            await sink.wait_for(lambda ev: all(last[s] in trade_ids(ev, s) for s in SYMBOLS))
            await trio.sleep(1)  # nothing more (a duplicate) may follow
            events = list(sink.events)
            metrics = pipeline.metrics()["bybit"]
            lost = pipeline.lost_total()
    for s in SYMBOLS:
        history = [t["i"] for t in fake_bybit.history("linear", s)]
        assert len(history) == 60
        assert trade_ids(events, s) == history  # each once, in order
    # the failing trades went on as they were, every other one through the hook
    sides = {e.trade_id: e.side for e in events if isinstance(e, Trade)}
    assert sorted(i for i, side in sides.items() if not side.endswith("+hook")) == sorted(
        hook.failing)
    assert len(hook.failing) == 12
    assert metrics["hook_failures"] == 12
    assert metrics.get("restarts", 0) == 0
    assert metrics.get("reconnects", 0) == 0
    assert metrics.get("recovered_trades", 0) == 0
    assert lost == 0
    # one line per cause (hook and exception type), not one per failure
    lines = [r.getMessage() for r in caplog.records if "event hook" in r.getMessage()]
    assert len(lines) == 2
    assert "FailingHook.streamer_transform_event failed on a Trade of source 'bybit': " \
           "RuntimeError: hook cannot take" in lines[0]
    assert "KeyError" in lines[1]
