"""A message that makes the decoder raise something it did not foresee costs that message only.

Through the real pipeline (bybit.linear -> testing.collect), on a MockClock: trades go on
before, between and after the poisoned frames, and every trade the sink got is compared by id
with the fake's log (each once, in order). Before the fix, the exception left the source, the
runtime restarted it with fresh connections (no gap-recovery state) and the trades made while
it was away were neither recovered nor reported.
"""

from __future__ import annotations

import logging

import trio
from faults.helpers import trade_ids
from pipelines import bybit_into_collect

from streamer._events import Price
from streamer.testing import running_pipeline

SYMBOLS = ["BTCUSDT", "ETHUSDT"]
DEPTH = 50_000  # msgspec raises RecursionError long before this depth

#: A publicTrade push whose ``data`` nests DEPTH lists deep (what the fast path rejects,
#: the general path's envelope decode then raises RecursionError on).
NESTED_DATA = ('{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1,"data":'
               + "[" * DEPTH + "]" * DEPTH + "}")
#: The same depth inside one field of an otherwise well-formed trade.
NESTED_FIELD = ('{"topic":"publicTrade.ETHUSDT","type":"snapshot","ts":1,"data":[{"T":1,'
                '"s":"ETHUSDT","S":"Buy","v":"1","p":' + "[" * DEPTH + "]" * DEPTH
                + ',"i":"nested"}]}')


def bad_price(first: str) -> str:
    """Two trades of a well-formed message, the second priced with a word: it decodes, then
    ``float`` raises ValueError while the price stream is taken from the trades. ``first``
    is the field the message starts with: "topic" takes the one-pass path, else the general
    one."""
    items = ('[{"T":1,"s":"BTCUSDT","S":"Buy","v":"1","p":"100","i":"ok-' + first + '"},'
             '{"T":2,"s":"BTCUSDT","S":"Buy","v":"1","p":"cheap","i":"bad-' + first + '"}]')
    fields = {"topic": '"topic":"publicTrade.BTCUSDT"', "type": '"type":"snapshot"',
              "data": '"data":' + items, "ts": '"ts":1'}
    order = [first] + [k for k in fields if k != first]
    return "{" + ",".join(fields[k] for k in order) + "}"


def toml(fake, streams: list[str]) -> str:
    return bybit_into_collect(fake, SYMBOLS, streams=streams)


def history_ids(fake, symbol: str) -> list[str]:
    return [t["i"] for t in fake.history("linear", symbol)]


def expected_prices(fake, symbol: str) -> list[float]:
    """The price stream from trades: each message's last trade price (the market sends two
    trades a message), when it differs from the one before."""
    out: list[float] = []
    for t in fake.history("linear", symbol)[1::2]:
        if not out or out[-1] != float(t["p"]):
            out.append(float(t["p"]))
    return out


async def run_with_poison(fake, pm, streams: list[str], poison: list[str]
                          ) -> tuple[list, dict]:
    """Trades on both symbols every 0.2 s for 30 ticks; after tick 5, the ``poison`` frames
    one after another. Returns the sink's events and the source's metrics once the last
    trade of each symbol arrived."""
    with trio.fail_after(600):  # virtual seconds
        async with running_pipeline(toml(fake, streams), pm) as pipeline:
            sink = pipeline.node("out")
            await fake.wait_subscribed("linear", [f"publicTrade.{s}" for s in SYMBOLS])
            last: dict[str, str] = {}
            for tick in range(30):
                for s in SYMBOLS:
                    last[s] = fake.trade("linear", s, count=2)[-1]["i"]
                if tick == 5:
                    for frame in poison:
                        fake.send_raw("linear", frame)
                await trio.sleep(0.2)
            await sink.wait_for(
                lambda ev: all(last[s] in trade_ids(ev, s) for s in SYMBOLS))
            await trio.sleep(1)  # nothing more (a duplicate) may follow
            return list(sink.events), pipeline.metrics()["bybit"]


async def test_deeply_nested_frames_cost_nothing_but_themselves(
    fake_bybit, plugin_manager, autojump_clock, caplog
):
    caplog.set_level(logging.WARNING)
    events, metrics = await run_with_poison(fake_bybit, plugin_manager, ["trades"],
                                            [NESTED_DATA, NESTED_FIELD])
    for s in SYMBOLS:
        assert trade_ids(events, s) == history_ids(fake_bybit, s)  # 60 each, once, in order
        assert len(history_ids(fake_bybit, s)) == 60
    assert metrics["malformed"] == 2
    assert metrics.get("reconnects", 0) == 0
    assert metrics.get("restarts", 0) == 0
    assert metrics.get("recovered_trades", 0) == 0
    assert fake_bybit.total_connections_opened == 1
    # logged once (rate-limited by kind): the first one, naming the exception
    lines = [r.getMessage() for r in caplog.records if "malformed message" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("malformed message (maximum recursion")


async def test_an_unforeseen_exception_in_one_message_costs_that_message_only(
    fake_bybit, plugin_manager, autojump_clock
):
    poison = [bad_price("topic"), bad_price("type")]
    assert poison[0].startswith('{"topic":"publicTrade.') and poison[1].startswith('{"type"')
    events, metrics = await run_with_poison(fake_bybit, plugin_manager, ["trades", "price"],
                                            poison)
    for s in SYMBOLS:
        # neither trade of either bad message: a message that raises adds nothing
        assert trade_ids(events, s) == history_ids(fake_bybit, s)
        assert len(history_ids(fake_bybit, s)) == 60
        # the price stream follows the good messages only
        prices = [e.price for e in events if isinstance(e, Price) and e.symbol == s]
        assert prices == expected_prices(fake_bybit, s)
    assert metrics["malformed"] == 2
    assert metrics.get("reconnects", 0) == 0
    assert metrics.get("restarts", 0) == 0
    assert fake_bybit.total_connections_opened == 1

