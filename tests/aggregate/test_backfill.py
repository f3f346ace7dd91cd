"""First-candle backfill from the fake Bybit's REST API, and the fall-back to partial."""

from __future__ import annotations

import logging

import trio

from aggregate.helpers import trade
from streamer import clock
from streamer.api import Context
from streamer.config import structure_options
from streamer.metrics import Metrics
from streamer_aggregate.intervals import candle_start
from streamer_aggregate.transform import KlineConfig, KlineTransform

M = 60_000


def make(rest_url: str, **options) -> KlineTransform:
    config = structure_options(KlineConfig, {"rest_url": rest_url, "turnover": True,
                                             "intervals": ["1m", "5m"], **options})
    ctx = Context(name="k", type="klines.from_trades", logger=logging.getLogger("t.bf"),
                  metrics=Metrics())
    return KlineTransform(config, ctx)


def fake_trades(fake, ts_list, price="65000.5", size="0.010"):
    """Trades made on the fake (so its candles know them), as our Trade events."""
    out = []
    for ts in ts_list:
        (t,) = fake.trade("linear", "BTCUSDT", price=price, size=size, ts=ts)
        out.append(trade(t["T"], t["p"], t["v"]))
    return out


async def drain(tr: KlineTransform, want: int) -> None:
    """Run the backfill worker until ``want`` REST answers have been applied."""
    metrics = tr.context.metrics
    async with trio.open_nursery() as nursery:
        nursery.start_soon(tr.backfill_worker, _no_emit)
        while (metrics["backfilled_klines"] + metrics["backfill_failed"]) < want:
            await trio.sleep(0.01)
        nursery.cancel_scope.cancel()


async def _no_emit(batch):
    raise AssertionError(f"nothing should be emitted here: {batch}")


async def test_first_candle_is_completed_from_rest(fake_bybit):
    # A 5-minute candle that ended a while ago: the fake saw trades we missed at its start.
    b5 = candle_start(clock.now_ms(), 5 * M) - 10 * M
    missed = fake_trades(fake_bybit, [b5 + 1000, b5 + 2000], price="64000", size="1.5")
    missed += fake_trades(fake_bybit, [b5 + 3000], price="66000", size="0.5")
    seen = fake_trades(fake_bybit, [b5 + 70_000, b5 + 80_000, b5 + 100_000], price="65000")
    tr = make(fake_bybit.rest_url)
    with trio.fail_after(10):
        assert tr.process(seen) == []
        await drain(tr, want=2)  # the first 1m candle we saw (b5+1m) and the 5m one
    later = fake_trades(fake_bybit, [b5 + 130_000], price="65001")
    out = tr.process(later)  # closes the 1m candle (trade time past its waiter window)
    assert tr.context.metrics["backfilled_klines"] == 2
    queries = [q for path, q in fake_bybit.rest_requests if path == "/v5/market/kline"]
    assert sorted((q["interval"], int(q["start"])) for q in queries) == [
        ("1", b5 + M), ("5", b5)]
    out += tr.aggregator.close_due(b5 + 5 * M + 100)
    five = next(k for k in out if k.interval == 5 * M)
    (want,) = [c for c in fake_bybit.klines("linear", "BTCUSDT", "5") if c["start"] == b5]
    assert (five.open, five.high, five.low, five.close) == (
        float(want["open"]), float(want["high"]), float(want["low"]), float(want["close"]))
    assert five.open == 64000.0 and five.high == 66000.0
    assert abs(five.volume - float(want["volume"])) < 1e-9
    assert abs(five.turnover - float(want["turnover"])) < 1e-6
    assert five.trade_count == 4 and not five.partial  # our trades only (a lower bound)
    # the 1m candle at b5 + 1m needed no missed trades but was backfilled all the same
    one = [k for k in out if k.interval == M and k.timestamp == b5 + M]
    assert one and not one[0].partial and abs(one[0].volume - 0.03) < 1e-12


async def test_rest_down_falls_back_to_partial(fake_bybit):
    fake_bybit.reachable = False
    b = candle_start(clock.now_ms(), 5 * M) - 10 * M
    tr = make(fake_bybit.rest_url, intervals=["1m"])
    with trio.fail_after(10):
        tr.process([trade(b + 30_000, 100)])
        await drain(tr, want=1)
    assert tr.context.metrics["backfill_failed"] == 1
    (k,) = tr.aggregator.close_due(b + M + 100)
    assert k.partial and k.open == 100.0 and k.trade_count == 1


async def test_unreachable_rest_host_falls_back_to_partial():
    with trio.socket.socket() as s:  # a port nobody listens on
        await s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    b = candle_start(clock.now_ms(), M) - 10 * M
    tr = make(f"http://127.0.0.1:{port}", intervals=["1m"])
    with trio.fail_after(10):
        tr.process([trade(b + 30_000, 100)])
        await drain(tr, want=1)
    (k,) = tr.aggregator.close_due(b + M + 100)
    assert k.partial
