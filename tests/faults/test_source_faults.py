"""Faults 2 and 3, through the real pipeline (bybit.linear -> testing.collect):

- the fake stops answering pings and sends nothing: the source declares the connection stale
  within ``stale_timeout``, replaces it, and data flows again;
- garbage frames (not JSON, truncated JSON, unknown topics, binary frames, invalid UTF-8,
  huge frames, wrong field types): each is counted in the source's metrics and skipped, and
  the trades sent after them arrive on the same connection.
"""

from __future__ import annotations

import random

import pytest
import trio
from pipelines import bybit_into_collect

from faults.helpers import trade_ids, wait_metric
from streamer import Backoff
from streamer.testing import running_pipeline


def toml(fake, symbols=("BTCUSDT",), extra: str = "") -> str:
    return bybit_into_collect(fake, symbols, extra=extra)


def history_ids(fake, symbol: str = "BTCUSDT") -> list[str]:
    return [t["i"] for t in fake.history("linear", symbol)]


async def test_silent_server_is_replaced_within_stale_timeout(
    fake_bybit, plugin_manager, autojump_clock
):
    fake = fake_bybit
    stale_timeout = 25.0
    with trio.fail_after(600):  # virtual seconds
        async with running_pipeline(toml(fake, extra=f"stale_timeout = {stale_timeout}"),
                                    plugin_manager) as pipeline:
            sink = pipeline.node("out")
            old = await fake.wait_subscribed("linear", ["publicTrade.BTCUSDT"])
            subscribed_at = trio.current_time()
            conn = pipeline.node("bybit").connections[0]
            conn.backoff = Backoff(initial=0.5, maximum=30, rng=random.Random(5))
            fake.trade("linear", "BTCUSDT")
            await sink.wait_for(1)
            # Pongs keep a quiet connection alive for far longer than stale_timeout: pings
            # at 20, 40 and 60 s (ping_interval), each answered at once...
            await trio.sleep(3 * stale_timeout)
            assert fake.total_connections_opened == 1
            assert old.pings_received == 3
            # ...until the server goes silent 75 s in: no pong, no data. The last thing
            # heard was the pong at 60 s, so the connection is stale at 60 + 25 = 85 s.
            fake.ignore_pings = True
            await trio.sleep_until(subscribed_at + 85 - 0.001)
            assert pipeline.metrics()["bybit"].get("stale", 0) == 0
            await trio.sleep(0.002)
            assert pipeline.metrics()["bybit"]["stale"] == 1
            new = await fake.wait_subscribed("linear", ["publicTrade.BTCUSDT"])
            replaced_at = trio.current_time() - subscribed_at
            assert new is not old and old.closed
            fake.trade("linear", "BTCUSDT")
            await sink.wait_for(2)
            metrics = pipeline.metrics()["bybit"]
    # Replaced after the first backoff step: random.Random(5).uniform(0, 0.5) = 0.311451
    # (the 85 s session was long enough to reset the backoff); connecting costs no
    # virtual time.
    assert replaced_at == pytest.approx(85 + 0.311451, abs=1e-6)
    assert metrics["stale"] == 1 and metrics["reconnects"] == 1
    assert trade_ids(sink.events, "BTCUSDT") == history_ids(fake)


HUGE = 4 * 1024 * 1024  # far above any Bybit message, under the 16 MiB frame limit

GARBAGE: list[tuple[str, bytes | str, bool]] = [
    # (metric it counts in, payload, binary frame)
    ("malformed", "this is not json", False),
    ("malformed", '{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1,"data":[{"T":17', False),
    ("malformed", "", False),
    ("malformed", b'{"topic":"publicTrade.BTCUSDT","data":[{"s":"\xff\xfe"}]}', False),  # bad UTF-8
    ("malformed", '{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1,'
                  '"data":[{"T":"soon","s":"BTCUSDT","S":"Buy","v":"1","p":"2","i":"x"}]}', False),
    ("malformed", "[" * 100_000, False),  # deep nesting
    ("malformed", "x" * HUGE, False),
    ("unknown_topic", '{"topic":"orderbook.50.BTCUSDT","type":"snapshot","ts":1,"data":{}}',
     False),
    ("unknown_topic", '{"topic":"liquidation.BTCUSDT","type":"snapshot","ts":1,"data":"'
                      + "y" * HUGE + '"}', False),
    ("unexpected", '{"hello":"world"}', False),
    ("unexpected_binary", b"\x00\x01\x02\xff", True),
    ("unexpected_binary", b"z" * HUGE, True),
]


async def test_garbage_frames_are_counted_and_skipped(fake_bybit, plugin_manager):
    fake = fake_bybit
    with trio.fail_after(60):
        async with running_pipeline(toml(fake), plugin_manager) as pipeline:
            sink = pipeline.node("out")
            conn = await fake.wait_subscribed("linear", ["publicTrade.BTCUSDT"])
            fake.trade("linear", "BTCUSDT", count=2)
            await sink.wait_for(2)
            for _metric, payload, binary in GARBAGE:
                fake.send_raw("linear", payload, binary=binary)
                fake.trade("linear", "BTCUSDT")  # between every bad frame: the stream goes on
            fake.trade("linear", "BTCUSDT", count=3)
            # Frames arrive in order on one connection: once the last trade is in, every
            # bad frame before it was read.
            await sink.wait_for(2 + len(GARBAGE) + 3)
            metrics = pipeline.metrics()["bybit"]
            assert fake.connections == [conn]
    want: dict[str, int] = {}
    for metric, _payload, _binary in GARBAGE:
        want[metric] = want.get(metric, 0) + 1
    for metric, n in want.items():
        assert metrics.get(metric, 0) == n, (metric, metrics)
    assert metrics.get("reconnects", 0) == 0
    assert metrics.get("recovered_trades", 0) == 0
    assert trade_ids(sink.events, "BTCUSDT") == history_ids(fake)


async def test_frame_over_the_size_limit_costs_one_reconnect_and_nothing_else(
    fake_bybit, plugin_manager
):
    fake = fake_bybit
    with trio.fail_after(60):
        async with running_pipeline(toml(fake), plugin_manager) as pipeline:
            sink = pipeline.node("out")
            first = await fake.wait_subscribed("linear", ["publicTrade.BTCUSDT"])
            fake.trade("linear", "BTCUSDT")
            await sink.wait_for(1)
            fake.send_raw("linear", "x" * (17 * 1024 * 1024))  # over the 16 MiB limit
            fake.trade("linear", "BTCUSDT", count=2)  # behind it: lost with the connection
            await wait_metric(pipeline, "bybit", "reconnects", 1)
            second = await fake.wait_subscribed("linear", ["publicTrade.BTCUSDT"])
            assert second is not first
            fake.trade("linear", "BTCUSDT")
            await sink.wait_for(lambda ev: trade_ids(ev, "BTCUSDT") == history_ids(fake))
            metrics = pipeline.metrics()["bybit"]
    assert metrics["reconnects"] == 1
    assert metrics["recovered_trades"] == 2
    assert metrics.get("trade_gaps", 0) == 0
