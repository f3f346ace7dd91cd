"""Volume and turnover are the exact decimal sums of the trades, written without float noise."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregate.helpers import trade
from streamer.intervals import MINUTE_MS
from streamer.wire import render
from streamer_aggregate.aggregator import KlineAggregator
from streamer_aggregate.amounts import parse_decimal
from streamer_aggregate.backfill import BackfillRequest, SourceCandle

B = 1_700_000_040_000  # a minute boundary
INTERVALS = [MINUTE_MS, 5 * MINUTE_MS]


def decimal_text(units: int, decimals: int) -> str:
    """A decimal string as an exchange writes one: ``decimals`` digits after the point."""
    return f"{Decimal(units).scaleb(-decimals):f}"


# A size of 0 is malformed (the aggregator drops it).
amount = st.builds(decimal_text, st.integers(1, 10**9), st.integers(0, 8))
positive_price = st.builds(decimal_text, st.integers(1, 10**8), st.integers(0, 6))
trades_in_one_minute = st.lists(
    st.tuples(st.integers(0, MINUTE_MS - 1), positive_price, amount), min_size=1, max_size=60)


def closed_klines(trades, *, turnover=True):
    agg = KlineAggregator(INTERVALS, waiter_ms=0, turnover=turnover, first_candle="partial")
    out = agg.add_trades(trades)
    out += agg.close_due(B + 10 * MINUTE_MS)
    return [k for k in out if k.trade_count]


def assert_exact(value: float, exact: Decimal) -> None:
    assert value == float(exact)
    if len(exact.normalize().as_tuple().digits) <= 15:
        # What every sink writes: the shortest repr, which is the decimal itself.
        assert Decimal(repr(value)) == exact


@settings(max_examples=300, deadline=None)
@given(trades_in_one_minute)
def test_volume_and_turnover_equal_the_decimal_sums(steps):
    trades = [trade(B + offset, price, size) for offset, price, size in steps]
    volume = sum(Decimal(t.size) for t in trades)
    turnover = sum(Decimal(t.price) * Decimal(t.size) for t in trades)
    klines = closed_klines(trades)
    assert [k.interval for k in klines] == INTERVALS
    for k in klines:
        assert_exact(k.volume, volume)
        assert k.turnover is not None
        assert_exact(k.turnover, turnover)


def test_the_wire_carries_the_decimal_not_float_noise():
    # float sums of these three read 97.04799999999999
    sizes = ["23.894", "2.462", "0.705", "69.987"]
    trades = [trade(B + i, "2500.1", size) for i, size in enumerate(sizes)]
    k = closed_klines(trades)[0]
    wire = msgspec.json.encode(render([k])[0]).decode()
    assert '"volume":97.048' in wire
    assert '"turnover":242629.7048' in wire


def test_finer_decimals_later_widen_the_open_candle_exactly():
    trades = [trade(B, "100", "3"), trade(B + 1, "100.25", "0.5"),
              trade(B + 2, "0.0000001", "0.00000003")]
    k = closed_klines(trades)[0]
    assert Decimal(repr(k.volume)) == Decimal("3.50000003")
    # 18 significant digits: the nearest float
    assert k.turnover == float(Decimal("350.125000000000003"))


def test_without_turnover_the_volume_is_exact_too():
    k = closed_klines([trade(B, "1", "0.1"), trade(B + 1, "1", "0.2")], turnover=False)[0]
    assert repr(k.volume) == "0.3" and k.turnover is None


def test_backfilled_volume_sums_exactly():
    agg = KlineAggregator([MINUTE_MS], waiter_ms=0, first_candle="backfill", turnover=True)
    agg.add_trades([trade(B + 30_000, "10.1", "0.1")])
    [request] = agg.take_backfill_requests(B + 30_000)
    assert request == BackfillRequest("linear", "BTCUSDT", MINUTE_MS, B)
    # The source's candle at its snapshot (before our trade): 0.2 traded, turnover 2.02.
    agg.apply_backfill(request, SourceCandle(open=10.1, high=10.1, low=10.1, close=10.1,
                                             volume=0.2, turnover=2.02,
                                             snapshot_ms=B + 29_000))
    [k] = agg.close_due(B + MINUTE_MS)
    assert (repr(k.volume), repr(k.turnover)) == ("0.3", "3.03")


@pytest.mark.parametrize("text, parsed", [
    ("0", (0, 0)), ("12", (12, 0)), ("0.010", (10, 3)), ("97.048", (97048, 3)),
    ("1e-05", (1, 5)), ("2E+3", (2000, 0)), (".5", (5, 1)),
])
def test_parse_decimal(text, parsed):
    assert parse_decimal(text) == parsed


@pytest.mark.parametrize("text", ["", "-1", "abc", "nan", "inf", "1.2.3", "١٢"])
def test_parse_decimal_refuses_what_is_not_a_non_negative_decimal(text):
    with pytest.raises(ValueError, match="not a non-negative decimal"):
        parse_decimal(text)


def test_the_units_caches_stay_bounded_and_the_sums_exact():
    from streamer_aggregate.amounts import CACHE_ENTRIES

    n = CACHE_ENTRIES + 5_000
    # 16 decimals: prices the float cannot tell exactly, so every one goes to the cache.
    trades = [trade(B + i % MINUTE_MS, f"{i}.{i:016d}", f"0.{i:06d}") for i in range(1, n + 1)]
    agg = KlineAggregator([MINUTE_MS], waiter_ms=0, turnover=True, first_candle="partial")
    agg.add_trades(trades)
    assert len(agg.amounts.sizes) <= CACHE_ENTRIES and len(agg.amounts.prices) <= CACHE_ENTRIES
    [k] = agg.close_due(B + MINUTE_MS)
    assert k.volume == float(sum(Decimal(t.size) for t in trades))
    assert k.turnover == float(sum(Decimal(t.price) * Decimal(t.size) for t in trades))


@pytest.mark.parametrize("prices", [
    # coarser then finer: the float of 100.25 is not 100.2 or 100.3 at one decimal
    ["100.5", "100.25", "100.125", "100.5"],
    # the same values written otherwise; a price of 15 characters and 13 decimals
    ["100.50", "100.5", "1E+2", "100", "0.1000000000001", "1234567890.12345"],
    # 19 characters, 17 decimals: as 0.3 in a float, but not the same decimal
    ["0.3", "0.30000000000000001", "0.3"],
    # 16 characters, then what only the parser reads
    ["99999999999999.9", "0.0000001", "2.5"],
])
def test_prices_read_from_their_float_or_parsed_sum_the_same_exact_turnover(prices):
    sizes = ["1", "0.5", "3", "0.25", "7", "2"][:len(prices)]
    trades = [trade(B + i, price, sizes[i]) for i, price in enumerate(prices)]
    k = closed_klines(trades)[0]
    assert k.trade_count == len(prices)
    turnover = sum(Decimal(p) * Decimal(s) for p, s in zip(prices, sizes, strict=True))
    assert k.turnover == float(turnover)
    assert k.high == max(float(p) for p in prices) and k.close == float(prices[-1])


def test_a_price_of_more_than_15_characters_is_parsed_not_read_from_its_float():
    agg = KlineAggregator([MINUTE_MS], waiter_ms=0, turnover=True, first_candle="partial")
    agg.add_trades([trade(B, "0.3", "1"), trade(B + 1, "0.30000000000000001", "1")])
    # float("0.30000000000000001") == 3 / 10: only the parser sees its 17 decimals
    assert (agg.amounts.price_decimals, agg.amounts.price_scale_float) == (17, 0.0)


@pytest.mark.parametrize("turnover", [True, False])
def test_a_trade_with_a_bad_size_or_price_is_dropped_counted_and_logged(turnover, caplog):
    agg = KlineAggregator([MINUTE_MS], waiter_ms=0, turnover=turnover, first_candle="partial")
    bad = [trade(B + 1, "1", "-0.5"), trade(B + 2, "1", "abc"), trade(B + 3, "x", "1")]
    agg.add_trades([trade(B, "2", "0.1"), *bad, trade(B + 4, "3", "0.2")])
    [k] = agg.close_due(B + MINUTE_MS)
    assert (repr(k.volume), k.trade_count, k.high) == ("0.3", 2, 3.0)
    assert agg.metrics["malformed_trades"] == 3
    assert (f"trade dropped: linear BTCUSDT 'id-{B + 1}': not a non-negative decimal number: "
            "'-0.5' (counted in malformed_trades)") in caplog.text
