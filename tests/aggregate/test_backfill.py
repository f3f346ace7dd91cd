"""First-candle backfill through the input source's history (a real bybit.linear source
against the fake Bybit), its per-symbol planning, and the fall-backs to partial."""

from __future__ import annotations

import logging

import pytest
import trio
from bybit.harness import make_source

from aggregate.helpers import trade
from streamer import clock
from streamer._api import Context
from streamer._config import structure_options
from streamer._metrics import Metrics
from streamer.history import HistoryUnavailable
from streamer.intervals import candle_start, interval
from streamer_aggregate.backfill import rows_needed
from streamer_aggregate.config import KlineConfig
from streamer_aggregate.transform import KlineTransform

M = 60_000


def make(fake=None, history=None, **options) -> KlineTransform:
    config = structure_options(KlineConfig, {"turnover": True, "intervals": ["1m", "5m"],
                                             **options})
    ctx = Context(name="k", type="klines.from_trades", logger=logging.getLogger("t.bf"),
                  metrics=Metrics(), inputs=("bybit",))
    if fake is not None:
        ctx.history.add("bybit", make_source(fake, symbols=["BTCUSDT"]).history)
    if history is not None:
        ctx.history.add("other", history)
    return KlineTransform(config, ctx)


def fake_trades(fake, ts_list, price="65000.5", size="0.010", symbol="BTCUSDT"):
    """Trades made on the fake (so its candles know them), as our Trade events."""
    out = []
    for ts in ts_list:
        (t,) = fake.trade("linear", symbol, price=price, size=size, ts=ts)
        out.append(trade(t["T"], t["p"], t["v"], symbol=symbol))
    return out


async def drain(tr: KlineTransform) -> None:
    """Run the backfill worker until no first candle waits any more."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(tr.backfill_worker, _no_emit)
        while tr.aggregator.pending_backfills():
            await trio.sleep(0.01)
        nursery.cancel_scope.cancel()


async def _no_emit(batch):
    raise AssertionError(f"nothing should be emitted here: {batch}")


def kline_queries(fake):
    return [(q["symbol"], q["interval"], int(q["start"]))
            for path, q in fake.rest_requests if path == "/v5/market/kline"]


async def test_one_answer_of_1m_candles_completes_the_1m_and_5m_first_candles(fake_bybit):
    # A 5-minute candle that ended a while ago: the fake saw trades we missed at its start.
    b5 = candle_start(clock.now_ms(), 5 * M) - 10 * M
    missed = fake_trades(fake_bybit, [b5 + 1000, b5 + 2000], price="64000", size="1.5")
    missed += fake_trades(fake_bybit, [b5 + 3000], price="66000", size="0.5")
    seen = fake_trades(fake_bybit, [b5 + 70_000, b5 + 80_000, b5 + 100_000], price="65000")
    tr = make(fake_bybit)
    with trio.fail_after(10):
        assert tr.process(seen) == []
        await drain(tr)
    later = fake_trades(fake_bybit, [b5 + 130_000], price="65001")
    out = tr.process(later)  # closes the 1m candle (trade time past its waiter window)
    assert tr.context.metrics["backfilled_klines"] == 2
    # both first candles (1m at b5+1m, 5m at b5) from one request of 1m candles
    assert kline_queries(fake_bybit) == [("BTCUSDT", "1", b5)]
    out += tr.aggregator.close_due(b5 + 5 * M + 100)
    five = next(k for k in out if k.interval == 5 * M)
    (want,) = [c for c in fake_bybit.klines("linear", "BTCUSDT", "5") if c["start"] == b5]
    assert (five.open, five.high, five.low, five.close) == (
        float(want["open"]), float(want["high"]), float(want["low"]), float(want["close"]))
    assert five.open == 64000.0 and five.high == 66000.0
    assert abs(five.volume - float(want["volume"])) < 1e-9
    assert abs(five.turnover - float(want["turnover"])) < 1e-6
    assert five.trade_count == 4 and not five.partial  # our trades only (a lower bound)
    one = [k for k in out if k.interval == M and k.timestamp == b5 + M]
    assert one and not one[0].partial and abs(one[0].volume - 0.03) < 1e-12


async def test_requests_are_one_per_symbol_whatever_the_intervals(fake_bybit):
    symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"]
    b = candle_start(clock.now_ms(), 4 * 60 * M) + 30_000
    tr = make(fake_bybit, intervals=["1m", "5m", "15m", "1h", "4h", "1D"])
    batch = [trade(b + i, 10, symbol=s) for i, s in enumerate(symbols)]
    with trio.fail_after(10):
        tr.process(batch)
        await drain(tr)
    queries = kline_queries(fake_bybit)
    # 1m candles serve 1m..4h (at most 240 rows), and 1D too while today has had at most
    # 1000 minutes (Bybit's most rows per answer); after that 1D is asked on its own
    now = clock.now_ms()
    today = rows_needed(interval("1m"), candle_start(now, 1440 * M), now)
    daily = [(s, "D") for s in symbols] if today > 1000 else []
    assert sorted((s, code) for s, code, _ in queries) == sorted(
        [(s, "1") for s in symbols] + daily)
    assert tr.context.metrics["backfill_failed"] == 0


async def test_a_non_bybit_interval_is_composed_from_finer_candles(fake_bybit):
    b10 = candle_start(clock.now_ms(), 10 * M) - 20 * M
    fake_trades(fake_bybit, [b10 + 5000], price="100", size="2")
    fake_trades(fake_bybit, [b10 + 4 * M], price="120", size="1")
    seen = fake_trades(fake_bybit, [b10 + 7 * M], price="110", size="1")
    tr = make(fake_bybit, intervals=["10m"])
    with trio.fail_after(10):
        tr.process(seen)
        await drain(tr)
    assert kline_queries(fake_bybit) == [("BTCUSDT", "5", b10)]  # the longest that fits
    (k,) = tr.aggregator.close_due(b10 + 10 * M + 100)
    assert (k.interval, k.timestamp, k.open, k.high, k.low, k.close) == (
        10 * M, b10, 100.0, 120.0, 100.0, 110.0)
    assert k.volume == 4.0 and not k.partial


async def test_a_sub_minute_first_candle_comes_from_recent_trades(fake_bybit):
    b = candle_start(clock.now_ms(), 10_000) - 60_000
    fake_trades(fake_bybit, [b + 1000, b + 2000], price="50", size="1")
    seen = fake_trades(fake_bybit, [b + 5000, b + 6000], price="60", size="2")
    fake_trades(fake_bybit, [b + 12_000], price="70", size="1")  # the next candle
    tr = make(fake_bybit, intervals=["10s"])
    with trio.fail_after(10):
        tr.process(seen)
        await drain(tr)
    assert kline_queries(fake_bybit) == []
    assert [p for p, _ in fake_bybit.rest_requests] == ["/v5/market/recent-trade"]
    (k,) = tr.aggregator.close_due(b + 10_000 + 100)
    assert (k.interval, k.open, k.high, k.low, k.close, k.volume, k.trade_count) == (
        10_000, 50.0, 60.0, 50.0, 60.0, 6.0, 4)
    assert not k.partial


async def test_calendar_months_are_completed_from_month_candles(fake_bybit):
    two = interval("2M")
    start = two.start(clock.now_ms())
    fake_trades(fake_bybit, [start + 1000], price="10", size="3")
    seen = fake_trades(fake_bybit, [clock.now_ms() - 1000], price="20", size="1")
    tr = make(fake_bybit, intervals=["2M"])
    with trio.fail_after(10):
        tr.process(seen)
        await drain(tr)
    assert [(s, code) for s, code, _ in kline_queries(fake_bybit)] == [("BTCUSDT", "M")]
    (k,) = tr.aggregator.open_klines()
    assert (k.interval, k.timestamp, k.open, k.volume) == (two.ms, start, 10.0, 4.0)
    assert not k.partial


async def test_rest_down_falls_back_to_partial(fake_bybit):
    fake_bybit.reachable = False
    b = candle_start(clock.now_ms(), 5 * M) - 10 * M
    tr = make(fake_bybit, intervals=["1m"])
    with trio.fail_after(10):
        tr.process([trade(b + 30_000, 100)])
        await drain(tr)
    assert tr.context.metrics["backfill_failed"] == 1
    (k,) = tr.aggregator.close_due(b + M + 100)
    assert k.partial and k.open == 100.0 and k.trade_count == 1


async def test_without_a_history_source_first_candles_are_partial_with_one_log_line(caplog):
    b = candle_start(clock.now_ms(), M) - 10 * M
    tr = make(intervals=["1m", "5m"])
    with caplog.at_level(logging.WARNING, logger="t.bf"), trio.fail_after(10):
        tr.process([trade(b + 30_000, 100, symbol="BTCUSDT")])
        tr.process([trade(b + 30_001, 100, symbol="ETHUSDT")])
        await drain(tr)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["no input source of channel 'linear' answers history requests; first "
                     "candles are emitted flagged partial"]
    assert all(k.partial for k in tr.aggregator.open_klines())


class TradesOnly:
    """A source's history that has no candles and keeps no trades."""

    channel = "linear"
    candle_intervals: frozenset[int] = frozenset()
    max_candles = 0

    async def candles(self, channel, symbol, interval_ms, start_ms, *, limit):
        raise AssertionError("not asked: it has no candle intervals")

    async def trades_since(self, channel, symbol, since_ms):
        raise HistoryUnavailable("this source keeps no trades")


async def test_a_source_that_cannot_answer_says_so_once(caplog):
    b = candle_start(clock.now_ms(), M) - 10 * M
    tr = make(history=TradesOnly(), intervals=["1m"])
    with caplog.at_level(logging.WARNING, logger="t.bf"), trio.fail_after(10):
        for symbol in ("BTCUSDT", "ETHUSDT", "SOLUSDT"):
            tr.process([trade(b + 30_000, 100, symbol=symbol)])
        await drain(tr)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["the linear source cannot answer for recent trades (this source keeps "
                     "no trades); those first candles are emitted flagged partial"]
    assert [k.partial for k in tr.aggregator.open_klines()] == [True, True, True]


@pytest.mark.parametrize("mode", ["partial", "skip"])
async def test_no_history_is_asked_unless_backfill(fake_bybit, mode):
    b = candle_start(clock.now_ms(), M) - 10 * M
    tr = make(fake_bybit, first_candle=mode)
    tr.process([trade(b + 30_000, 100)])
    assert tr.aggregator.pending_backfills() == 0
    assert fake_bybit.rest_requests == []


async def test_more_trades_than_the_source_keeps_leave_the_candle_partial(fake_bybit):
    b = candle_start(clock.now_ms(), 60_000) - 5 * 60_000
    missed = [fake_bybit.trade("spot", "BTCUSDT", price="5", size="1", ts=b + 100 + i)
              for i in range(70)]  # Bybit spot keeps the newest 60
    (t,) = fake_bybit.trade("spot", "BTCUSDT", price="6", size="1", ts=b + 1000)
    config = structure_options(KlineConfig, {"intervals": ["10s"]})
    ctx = Context(name="k", type="klines.from_trades", logger=logging.getLogger("t.bf"),
                  metrics=Metrics())
    ctx.history.add("bybit", make_source(fake_bybit, "spot", symbols=["BTCUSDT"]).history)
    tr = KlineTransform(config, ctx)
    with trio.fail_after(10):
        tr.process([trade(t["T"], t["p"], t["v"], channel="spot")])
        await drain(tr)
    assert len(missed) == 70 and ctx.metrics["backfill_incomplete"] == 1
    (k,) = tr.aggregator.open_klines()
    assert k.partial and k.trade_count == 1 + 59  # what the source still had, plus ours


async def test_past_the_queue_bound_first_candles_are_partial_at_once():
    from streamer_aggregate.transform import BACKFILL_QUEUE

    b = candle_start(clock.now_ms(), M) - 10 * M
    tr = make(intervals=["1m"])  # no worker runs: every queued symbol stays queued
    batch = [trade(b + 30_000, 100, symbol=f"S{i}USDT") for i in range(BACKFILL_QUEUE + 2)]
    tr.process(batch)
    assert tr.context.metrics["backfill_dropped"] == 2
    assert tr.aggregator.pending_backfills() == BACKFILL_QUEUE
    dropped = [k for k in tr.aggregator.open_klines() if k.partial]
    assert sorted(k.symbol for k in dropped) == [f"S{BACKFILL_QUEUE}USDT",
                                                 f"S{BACKFILL_QUEUE + 1}USDT"]


#: Answers that are no kline list: nested past the JSON decoder's depth (RecursionError), a
#: list that is an object, rows that are not 7 strings, a price that is no finite number.
_DEEP = b"[" * 50_000 + b"]" * 50_000
_BAD_KLINE_ANSWERS = {
    "deep": b'{"retCode":0,"result":{"list":' + _DEEP + b'},"time":1}',
    "list-is-object": b'{"retCode":0,"result":{"list":{"a":1}},"time":1}',
    "rows-not-lists": b'{"retCode":0,"result":{"list":[1,{"a":1}]},"time":1}',
    "nan": b'{"retCode":0,"result":{"list":[["1","nan","1","1","1","1","1"]]},"time":1}',
    "time-is-text": b'{"retCode":0,"result":{"list":[]},"time":"soon"}',
}
_BAD_TRADE_ANSWERS = {
    "deep": b'{"retCode":0,"result":{"list":' + _DEEP + b'},"time":1}',
    "rows-not-objects": b'{"retCode":0,"result":{"list":[1,"x"]},"time":1}',
    "price-is-a-word": (b'{"retCode":0,"result":{"list":[{"execId":"1","symbol":"BTCUSDT",'
                        b'"price":"cheap","size":"1","side":"Buy","time":"1"}]},"time":1}'),
}


@pytest.mark.parametrize("body", list(_BAD_KLINE_ANSWERS.values()), ids=list(_BAD_KLINE_ANSWERS))
async def test_a_malformed_kline_answer_falls_back_to_partial(fake_bybit, body):
    fake_bybit.rest_bodies["/v5/market/kline"] = [body]
    b = candle_start(clock.now_ms(), 5 * M) - 10 * M
    tr = make(fake_bybit, intervals=["1m"])
    with trio.fail_after(10):
        tr.process([trade(b + 30_000, 100)])
        await drain(tr)
    assert fake_bybit.rest_bodies["/v5/market/kline"] == []  # it was asked, and answered so
    assert tr.context.metrics["backfill_failed"] == 1
    (k,) = tr.aggregator.close_due(b + M + 100)
    assert k.partial and k.open == 100.0 and k.trade_count == 1


@pytest.mark.parametrize("body", list(_BAD_TRADE_ANSWERS.values()), ids=list(_BAD_TRADE_ANSWERS))
async def test_a_malformed_recent_trade_answer_falls_back_to_partial(fake_bybit, body):
    fake_bybit.rest_bodies["/v5/market/recent-trade"] = [body]
    b = candle_start(clock.now_ms(), 10_000) - 60_000
    tr = make(fake_bybit, intervals=["10s"])
    with trio.fail_after(10):
        tr.process([trade(b + 5000, 60)])
        await drain(tr)
    assert fake_bybit.rest_bodies["/v5/market/recent-trade"] == []
    assert tr.context.metrics["backfill_failed"] == 1
    (k,) = tr.aggregator.close_due(b + 10_000 + 100)
    assert k.partial and k.open == 60.0 and k.trade_count == 1


class TradesWithBadNumbers(TradesOnly):
    """A history (not Bybit's, which checks its rows) whose recent trades include some that
    are priced or sized with no number."""

    async def trades_since(self, channel, symbol, since_ms):
        from streamer.history import RecentTrades

        b = since_ms
        return RecentTrades((trade(b + 1000, 50), trade(b + 1500, "nan"), trade(b + 2000, "x"),
                             trade(b + 2500, 70, size="-2"), trade(b + 3000, 40, size="3")),
                            complete=True)


async def test_backfilled_trades_with_no_number_are_dropped_and_counted():
    b = candle_start(clock.now_ms(), 10_000) - 60_000
    tr = make(history=TradesWithBadNumbers(), intervals=["10s"])
    with trio.fail_after(10):
        tr.process([trade(b + 5000, 60, size="2")])
        await drain(tr)
    assert tr.context.metrics["malformed_trades"] == 3
    (k,) = tr.aggregator.close_due(b + 10_000 + 100)
    assert (k.open, k.high, k.low, k.close, k.volume, k.trade_count) == (
        50.0, 60.0, 40.0, 60.0, 6.0, 3)
    assert not k.partial
