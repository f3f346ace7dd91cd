"""Property tests: for any trade sequence the aggregator's closed klines equal the reference
computation, in order and out of order within the waiter window."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from aggregate.helpers import (
    assert_same,
    epoch_aligned_start,
    kline_key,
    reference_klines,
    trade,
)
from streamer.intervals import MINUTE_MS
from streamer_aggregate.aggregator import KlineAggregator

INTERVALS = [MINUTE_MS, 3 * MINUTE_MS, 5 * MINUTE_MS]

BOUNDARY = 1_700_000_100_000  # a 5-minute boundary (Nov 2023)
assert BOUNDARY % (5 * MINUTE_MS) == 0

# Trade times cluster around minute boundaries, where the closing rules matter.
trade_steps = st.lists(
    st.tuples(
        st.integers(-2, 8),  # which minute boundary
        st.one_of(st.integers(-150, 150), st.integers(-30_000, 30_000)),  # offset from it
        st.sampled_from(["BTCUSDT", "ETHUSDT"]),
        st.integers(1, 2000),  # price in ticks of 0.5
        st.integers(1, 500),  # size in steps of 0.001
        st.one_of(st.just(0), st.integers(0, 100)),  # arrival delay, at most the waiter
    ),
    min_size=1,
    max_size=120,
)


def build(steps, jitter: bool):
    """Trades in arrival order: by time, each delayed by up to 100 ms when ``jitter``."""
    made = []
    for k, offset, sym, price, size, delay in steps:
        ts = BOUNDARY + k * MINUTE_MS + offset
        made.append((ts, len(made), trade(ts, price / 2, f"{size / 1000:.3f}", symbol=sym),
                     delay if jitter else 0))
    made.sort(key=lambda m: (m[0], m[1]))  # exchange order
    arrival = sorted(range(len(made)), key=lambda i: (made[i][0] + made[i][3], i))
    return [made[i][2] for i in arrival]


def final_limit(trades) -> int:
    last = max(t.ts for t in trades)
    return epoch_aligned_start(last, max(INTERVALS)) + max(INTERVALS)


def run_aggregator(trades, waiter_ms: int, batch_sizes, clock_steps: bool, fill_gaps=True):
    agg = KlineAggregator(INTERVALS, waiter_ms=waiter_ms, first_candle="partial",
                          fill_gaps=fill_gaps, turnover=True)
    closed = []
    i = 0
    sizes = iter(batch_sizes)
    seen_max = 0
    while i < len(trades):
        n = next(sizes, 1)
        batch = trades[i:i + max(1, n)]
        i += len(batch)
        closed += agg.add_trades(batch)
        seen_max = max([seen_max] + [t.ts for t in batch])
        if clock_steps:
            # a local clock that reads the newest trade time: closes what that time allows
            closed += agg.close_due(seen_max)
    closed += agg.close_due(final_limit(trades) + waiter_ms)
    assert all(k.closed for k in closed)
    keys = [(k.channel, k.symbol, k.interval, k.timestamp) for k in closed]
    assert len(keys) == len(set(keys)), "a closed kline was emitted twice"
    assert agg.metrics["late_trades"] == 0
    return sorted(kline_key(k) for k in closed)


@settings(max_examples=200, deadline=None)
@given(trade_steps, st.lists(st.integers(1, 20)), st.booleans())
def test_waiter_in_order_matches_reference(steps, batch_sizes, clock_steps):
    trades = build(steps, jitter=False)
    got = run_aggregator(trades, 100, batch_sizes, clock_steps)
    assert_same(got, reference_klines(trades, INTERVALS, final_limit(trades)))


@settings(max_examples=200, deadline=None)
@given(trade_steps, st.lists(st.integers(1, 20)), st.booleans())
def test_waiter_out_of_order_within_window_matches_reference(steps, batch_sizes, clock_steps):
    trades = build(steps, jitter=True)
    got = run_aggregator(trades, 100, batch_sizes, clock_steps)
    assert_same(got, reference_klines(trades, INTERVALS, final_limit(trades)))


@settings(max_examples=200, deadline=None)
@given(trade_steps, st.lists(st.integers(1, 20)), st.booleans(), st.booleans())
def test_no_waiter_in_order_matches_reference(steps, batch_sizes, clock_steps, fill_gaps):
    trades = build(steps, jitter=False)
    got = run_aggregator(trades, 0, batch_sizes, clock_steps, fill_gaps=fill_gaps)
    assert_same(got, reference_klines(trades, INTERVALS, final_limit(trades), fill_gaps))


@settings(max_examples=100, deadline=None)
@given(trade_steps)
def test_every_trade_updates_end_with_the_closed_kline(steps):
    trades = build(steps, jitter=True)
    agg = KlineAggregator(INTERVALS, waiter_ms=100, updates="every_trade",
                          first_candle="partial", turnover=True)
    emitted = []
    for t in trades:
        emitted += agg.add_trades([t])
    emitted += agg.close_due(final_limit(trades) + 100)
    last_open = {}
    closed = []
    for k in emitted:
        key = (k.channel, k.symbol, k.interval, k.timestamp)
        if k.closed:
            assert key not in {c[:4] for c in closed}
            closed.append(kline_key(k))
            if k.trade_count:  # not a flat kline: the last open update equals it
                assert kline_key(last_open.pop(key)) == kline_key(k)
        else:
            assert key not in {c[:4] for c in closed}, "an update after the close"
            last_open[key] = k
    assert_same(sorted(closed), reference_klines(trades, INTERVALS, final_limit(trades)))
