"""A trade whose price or size is no positive finite number never reaches a kline.

The Bybit decoder passes a trade's price and size on as the strings it got (reading them as
numbers there cost ~15% of the hot path, docs/faults.md); the aggregator, which reads them,
drops such a trade and counts it in ``malformed_trades``. Before, a price that is a word made
``process`` raise, so the transform lost the rest of that batch, and a "nan" price went into
the candle. Real pipeline against the fake Bybit (its frames sent raw), MockClock.
"""

from __future__ import annotations

import trio
from faults.helpers import (
    bybit_klines_toml,
    closed_klines,
    expected_klines,
    kline_tuple,
    trade_ids,
)

from streamer.clock import now_ms
from streamer.testing import running_pipeline

SYMBOLS = ["BTCUSDT", "ETHUSDT"]
#: (trade id, price, size) of each bad trade, one message each.
BAD = [("word", "cheap", "1"), ("nan", "nan", "1"), ("inf", "inf", "1"),
       ("negative", "100", "-1"), ("huge", "100", "1e999"), ("zero", "0", "1"),
       ("empty", "", "1"), ("nan-size", "100", "NaN")]


def frame(ts: int, tag: str, price: str, size: str) -> str:
    return ('{"topic":"publicTrade.ETHUSDT","type":"snapshot","ts":' + str(ts) + ',"data":[{"T":'
            + str(ts) + f',"s":"ETHUSDT","S":"Sell","v":"{size}","p":"{price}","i":"{tag}"}}]}}')


async def test_trades_priced_with_no_number_are_dropped_and_counted(
    fake_bybit, plugin_manager, autojump_clock
):
    with trio.fail_after(600):
        async with running_pipeline(bybit_klines_toml(fake_bybit, SYMBOLS),
                                    plugin_manager) as pipeline:
            await fake_bybit.wait_subscribed("linear", [f"publicTrade.{s}" for s in SYMBOLS])
            for tick in range(40):  # 40 ticks 5 s apart: 4 closed minutes at least
                for s in SYMBOLS:
                    fake_bybit.trade("linear", s, count=2)
                if tick == 7:
                    for tag, price, size in BAD:
                        fake_bybit.send_raw("linear", frame(now_ms(), tag, price, size))
                    for s in SYMBOLS:  # the same batch carries good trades after them
                        fake_bybit.trade("linear", s, count=2)
                await trio.sleep(5)
            trades = pipeline.node("trades")
            last = {s: fake_bybit.history("linear", s)[-1]["i"] for s in SYMBOLS}
            await trades.wait_for(lambda ev: all(last[s] in trade_ids(ev, s) for s in SYMBOLS))
            klines = list(pipeline.node("klines").events)
            passed = trade_ids(trades.events, "ETHUSDT")
            metrics = pipeline.metrics()
    assert metrics["agg"]["malformed_trades"] == len(BAD) == 8
    assert metrics["agg"].get("errors", 0) == 0
    assert metrics["agg"].get("late_trades", 0) == 0
    # the trades go on to the trade sinks as the exchange wrote them
    made = {t["i"] for t in fake_bybit.history("linear", "ETHUSDT")}
    assert [i for i in passed if i not in made] == [tag for tag, _, _ in BAD]
    for s in SYMBOLS:
        history = fake_bybit.history("linear", s)
        assert len(history) == 82
        expected = expected_klines(history)
        got = {k.timestamp: kline_tuple(k) for k in closed_klines(klines, s)}
        assert len(got) >= 3
        assert got == {start: expected[start] for start in got}  # exact, as from the fake
