"""KlineAggregator rules, one at a time (no clock: times are passed in)."""

from __future__ import annotations

import pytest

from aggregate.helpers import trade
from streamer_aggregate.aggregator import KlineAggregator
from streamer_aggregate.backfill import BackfillRequest, SourceCandle

M = 60_000
B = 1_700_000_100_000  # a 5-minute boundary


def agg(**kw) -> KlineAggregator:
    kw.setdefault("first_candle", "partial")
    return KlineAggregator(kw.pop("intervals", [M]), **kw)


def test_trade_within_waiter_after_a_later_trade_still_counts():
    a = agg(waiter_ms=100)
    a.add_trades([trade(B - 1000, 1)])
    assert a.add_trades([trade(B, 2)]) == []  # the old candle waits out its latency
    assert a.add_trades([trade(B - 50, 3)]) == []
    (k,) = a.close_due(B + 100)
    assert (k.timestamp, k.open, k.close, k.trade_count) == (B - M, 1.0, 3.0, 2)
    assert a.metrics["late_trades"] == 0


def test_trade_within_waiter_goes_to_its_own_candle_of_every_interval():
    """A trade for the previous minute, after the next minute opened, while the 5-minute
    candle spans both: the 1-minute candle it belongs to gets it, the newer one does not."""
    a = agg(waiter_ms=100, intervals=[M, 5 * M])
    a.add_trades([trade(B + M - 1000, 1)])
    a.add_trades([trade(B + M, 2)])
    a.add_trades([trade(B + M - 50, 3)])
    a.add_trades([trade(B + M + 10, 4)])
    (k,) = a.close_due(B + M + 100)
    assert (k.interval, k.timestamp, k.open, k.close, k.trade_count) == (M, B, 1.0, 3.0, 2)
    out = a.close_due(B + 5 * M + 100)
    by_interval = {(x.interval, x.timestamp): x for x in out}
    second = by_interval[(M, B + M)]
    assert (second.open, second.high, second.low, second.close, second.trade_count) == (
        2.0, 4.0, 2.0, 4.0, 2)
    five = by_interval[(5 * M, B)]
    assert (five.open, five.high, five.low, five.close, five.trade_count) == (
        1.0, 4.0, 1.0, 4.0, 4)


def test_late_trade_is_counted_and_never_reopens_the_closed_kline():
    a = agg(waiter_ms=100)
    a.add_trades([trade(B - 1000, 1)])
    (closed,) = a.close_due(B + 100)
    assert closed.closed and closed.timestamp == B - M
    assert a.add_trades([trade(B - 10, 5)]) == []
    assert a.metrics["late_trades"] == 1
    # the next close emits the next candle (flat) only: no second kline for B - M
    out = a.close_due(B + M + 100)
    assert [(k.timestamp, k.close, k.volume) for k in out] == [(B, 1.0, 0.0)]


def test_trade_past_the_waiter_window_closes_by_trade_time():
    a = agg(waiter_ms=100)
    a.add_trades([trade(B - 1000, 1)])
    (k,) = a.add_trades([trade(B + 100, 2)])
    assert k.timestamp == B - M and k.closed


def test_without_waiter_the_first_trade_of_the_next_interval_closes():
    a = agg(waiter_ms=0)
    a.add_trades([trade(B - 1000, 1)])
    (k,) = a.add_trades([trade(B, 2)])
    assert k.timestamp == B - M
    a.add_trades([trade(B - 1, 9)])
    assert a.metrics["late_trades"] == 1


def test_without_waiter_the_clock_closes_at_the_boundary():
    a = agg(waiter_ms=0)
    a.add_trades([trade(B - 1000, 1)])
    assert a.close_due(B - 1) == []
    (k,) = a.close_due(B)
    assert k.timestamp == B - M


def test_flat_klines_fill_intervals_without_trades():
    a = agg(waiter_ms=100, turnover=True)
    a.add_trades([trade(B - 1000, 7, "2")])
    out = a.close_due(B + 3 * M + 100)
    assert [(k.timestamp, k.open, k.high, k.low, k.close, k.volume, k.trade_count)
            for k in out] == [
        (B - M, 7.0, 7.0, 7.0, 7.0, 2.0, 1),
        (B, 7.0, 7.0, 7.0, 7.0, 0.0, 0),
        (B + M, 7.0, 7.0, 7.0, 7.0, 0.0, 0),
        (B + 2 * M, 7.0, 7.0, 7.0, 7.0, 0.0, 0),
    ]
    assert out[0].turnover == 14.0 and out[1].turnover == 0.0


def test_no_flat_klines_when_disabled_and_none_before_a_first_close():
    a = agg(waiter_ms=100, fill_gaps=False)
    assert a.close_due(B + 10 * M) == []
    a.add_trades([trade(B - 1000, 7)])
    out = a.add_trades([trade(B + 5 * M, 8)])  # closes B - M: trade time is past its wait
    out += a.close_due(B + 6 * M + 100)
    assert [k.timestamp for k in out] == [B - M, B + 5 * M]


def test_every_trade_emits_open_kline_per_batch_then_the_closed_one():
    a = agg(waiter_ms=100, updates="every_trade")
    (u1,) = a.add_trades([trade(B - 3000, 1), trade(B - 2000, 2)])
    (u2,) = a.add_trades([trade(B - 1000, 3)])
    assert (u1.closed, u1.close, u1.trade_count) == (False, 2.0, 2)
    assert (u2.closed, u2.close, u2.trade_count) == (False, 3.0, 3)
    (c,) = a.close_due(B + 100)
    assert (c.closed, c.close, c.trade_count) == (True, 3.0, 3)


def test_throttled_updates_only_on_flush():
    a = agg(waiter_ms=100, updates="throttled")
    assert a.add_trades([trade(B - 3000, 1)]) == []
    assert a.add_trades([trade(B - 2000, 2)]) == []
    (u,) = a.flush_updates()
    assert (u.closed, u.trade_count) == (False, 2)
    assert a.flush_updates() == []
    a.add_trades([trade(B - 1000, 3)])
    a.close_due(B + 100)
    assert a.flush_updates() == []  # closed before the flush: no stale open update


def test_first_candle_partial_and_skip():
    p = agg(waiter_ms=100, first_candle="partial")
    p.add_trades([trade(B - 1000, 1)])
    (k,) = p.close_due(B + 100)
    assert k.partial
    # a candle starting exactly at the first trade is complete
    q = agg(waiter_ms=100, first_candle="partial")
    q.add_trades([trade(B, 1)])
    (k,) = q.close_due(B + M + 100)
    assert not k.partial
    s = agg(waiter_ms=100, first_candle="skip")
    s.add_trades([trade(B - 1000, 1)])
    s.add_trades([trade(B + 1000, 2)])
    out = s.close_due(B + M + 100)
    assert [k.timestamp for k in out] == [B]
    assert s.metrics["skipped_first_klines"] == 1


def test_backfill_merges_rest_candle_and_trades_after_its_snapshot():
    a = agg(waiter_ms=100, first_candle="backfill", turnover=True)
    a.add_trades([trade(B - 5000, 10, "1")])
    (req,) = a.take_backfill_requests(B)
    assert req == BackfillRequest("linear", "BTCUSDT", M, B - M)
    a.add_trades([trade(B - 4000, 12, "2"), trade(B - 3000, 9, "1")])
    # Bybit's candle at B - 3500: [B-60000, B-3500] including our first two trades
    rest = SourceCandle(open=8, high=11, low=7.5, close=12, volume=10, turnover=99,
                        snapshot_ms=B - 3500)
    assert a.apply_backfill(req, rest) == []
    a.add_trades([trade(B - 2000, 13, "1")])  # fast path again after the merge
    (k,) = a.close_due(B + 100)
    assert (k.open, k.high, k.low, k.close) == (8.0, 13.0, 7.5, 13.0)
    assert k.volume == 10 + 1 + 1  # REST volume + the two trades after the snapshot
    assert k.turnover == 99 + 9 + 13
    assert k.trade_count == 4  # ours only: a lower bound
    assert not k.partial


def test_backfill_failure_and_lateness_mark_partial():
    a = agg(waiter_ms=100, first_candle="backfill")
    a.add_trades([trade(B - 5000, 10)])
    (req,) = a.take_backfill_requests(B)
    a.apply_backfill(req, None)
    (k,) = a.close_due(B + 100)
    assert k.partial and k.open == 10.0
    b = agg(waiter_ms=100, first_candle="backfill")
    b.add_trades([trade(B - 5000, 10)])
    (req,) = b.take_backfill_requests(B)
    (k,) = b.close_due(B + 100)  # REST answer not back yet
    assert k.partial
    assert b.apply_backfill(req, SourceCandle(1, 1, 1, 1, 1, 1, B)) == []
    assert b.metrics["backfill_discarded"] == 1


def test_weekly_and_several_intervals_close_in_time_order():
    a = agg(intervals=[M, 5 * M], waiter_ms=100)
    a.add_trades([trade(B + 10, 1)])
    out = a.close_due(B + 5 * M + 100)
    assert [(k.interval, k.timestamp) for k in out] == (
        [(M, B + i * M) for i in range(5)] + [(5 * M, B)]
    )


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="duplicate"):
        KlineAggregator([M, M])
    with pytest.raises(ValueError, match="at least one"):
        KlineAggregator([])


def test_non_trade_events_are_ignored():
    from streamer._events import Price

    a = agg()
    assert a.add_trades([Price("linear", "BTCUSDT", 1.0, B)]) == []
    assert a.open_klines() == []


def test_a_waiting_first_candle_keeps_bounded_state_not_its_trades():
    from streamer_aggregate.backfill import MAX_MARKS

    h = 60 * M
    a = agg(intervals=[h], first_candle="backfill", turnover=True)
    t0 = B + 1000  # inside an hour that opened before we listened
    a.add_trades([trade(t0, 10, "1")])
    (req,) = a.take_backfill_requests(t0)
    for i in range(1, 100):  # 100,000 trades, one a millisecond
        a.add_trades([trade(t0 + i * 1000 + j, 10, "1") for j in range(1000)])
    (bucket,) = a._pending
    pending = bucket.pending
    assert len(pending.marks_ts) <= MAX_MARKS  # whatever the number of trades
    assert bucket.trade_count == 1 + 99_000
    # The source counted 7 trades we missed plus ours up to its snapshot at t0 + 50 s.
    snap = t0 + 50_000
    ours_before = 1 + sum(1 for i in range(1, 100) for j in range(1000)
                          if t0 + i * 1000 + j <= snap)
    a.apply_backfill(req, SourceCandle(9, 12, 8, 10, 7 + ours_before, 70 + 10 * ours_before,
                                       snap))
    (k,) = a.open_klines()
    exact = 7 + bucket.trade_count
    assert exact <= k.volume <= exact + pending.resolution_ms  # at most one slot over
    assert (k.open, k.high, k.low, k.close, k.partial) == (9, 12, 8, 10, False)
    assert a.pending_backfills() == 0


def test_a_first_candle_stops_waiting_at_its_deadline():
    a = agg(intervals=[60 * M], first_candle="backfill", backfill_deadline_ms=3000,
            updates="throttled")
    a.add_trades([trade(B + 1000, 10)])
    assert a.flush_updates() == []  # waiting: not shown yet
    (req,) = a.take_backfill_requests(B + 1000)
    assert a.next_backfill_deadline() == B + 4000
    a.close_due(B + 3999)
    assert a.pending_backfills() == 1
    a.close_due(B + 4000)
    assert a.pending_backfills() == 0 and a.metrics["backfill_deadline"] == 1
    (k,) = a.flush_updates()
    assert k.partial and not k.closed
    assert a.apply_backfill(req, SourceCandle(1, 1, 1, 1, 1, 1, B)) == []  # too late
    assert a.metrics["backfill_discarded"] == 1


def test_sub_minute_and_calendar_month_candles():
    import datetime as dt

    from streamer.intervals import MONTH_MS

    a = agg(intervals=[500, 10_000], waiter_ms=0)
    out = a.add_trades([trade(B + 100, 1), trade(B + 600, 2), trade(B + 10_050, 3)])
    out += a.close_due(B + 10_500)
    assert sorted((k.interval, k.timestamp, k.close) for k in out if k.trade_count) == [
        (500, B, 1.0), (500, B + 500, 2.0), (500, B + 10_000, 3.0), (10_000, B, 2.0)]
    jan = int(dt.datetime(2024, 1, 31, 23, 0, tzinfo=dt.timezone.utc).timestamp() * 1000)
    feb = int(dt.datetime(2024, 2, 1, tzinfo=dt.timezone.utc).timestamp() * 1000)
    mar = int(dt.datetime(2024, 3, 1, tzinfo=dt.timezone.utc).timestamp() * 1000)
    m = agg(intervals=[MONTH_MS], waiter_ms=100)
    m.add_trades([trade(jan, 1), trade(feb + 5, 2)])
    (k,) = m.close_due(feb + 100)
    assert (k.interval, k.timestamp, k.close) == (MONTH_MS, feb - 31 * 86_400_000, 1.0)
    assert m.close_due(mar + 99) == []  # February 2024 has 29 days, not the nominal 30
    (k,) = m.close_due(mar + 100)
    assert (k.timestamp, k.close) == (feb, 2.0)
