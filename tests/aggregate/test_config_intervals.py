"""Interval parsing and alignment (1W as Bybit and the fake align it), config validation."""

from __future__ import annotations

import datetime as dt

import pytest

from fakebybit.market import period_start
from streamer.config import ConfigError, structure_options
from streamer_aggregate.intervals import (
    DAY_MS,
    INTERVALS,
    WEEK_MS,
    bybit_code,
    candle_start,
    parse_interval,
)
from streamer_aggregate.passthrough import PassthroughConfig
from streamer_aggregate.transform import KlineConfig


def test_parse_every_interval():
    assert parse_interval("1m") == 60_000
    assert parse_interval("4h") == 4 * 3_600_000
    assert parse_interval("1D") == DAY_MS
    assert parse_interval("1W") == WEEK_MS
    assert [bybit_code(parse_interval(i)) for i in INTERVALS] == [
        "1", "3", "5", "15", "30", "60", "120", "240", "360", "720", "D", "W"]


@pytest.mark.parametrize("bad", ["2m", "1M", "60", "1d", "", "1w", "h"])
def test_unknown_interval_lists_the_valid_ones(bad):
    with pytest.raises(ValueError, match=r"valid intervals: 1m, 3m, 5m, .*1D, 1W"):
        parse_interval(bad)


@pytest.mark.parametrize("ts", [0, 1_700_000_123_456, 1_704_067_200_000, 1_704_067_199_999,
                                1_735_603_200_000, 1_709_251_199_999])
def test_alignment_matches_the_fake_bybit(ts):
    codes = {"1m": "1", "3m": "3", "5m": "5", "15m": "15", "30m": "30", "1h": "60",
             "2h": "120", "4h": "240", "6h": "360", "12h": "720", "1D": "D", "1W": "W"}
    for name, code in codes.items():
        assert candle_start(ts, parse_interval(name)) == period_start(ts, code), name


def test_weeks_start_on_monday_midnight_utc():
    for ts in (1_700_000_123_456, 1_704_067_200_000, 1_735_603_200_000, 86_400_000 * 3):
        start = dt.datetime.fromtimestamp(candle_start(ts, WEEK_MS) / 1000, tz=dt.timezone.utc)
        assert start.weekday() == 0 and (start.hour, start.minute) == (0, 0)
    # Mon 2024-01-01 00:00 UTC is its own week's start
    assert candle_start(1_704_067_200_000, WEEK_MS) == 1_704_067_200_000


def test_config_defaults_and_strict_structuring():
    c = structure_options(KlineConfig, {})
    assert (c.interval_ms, c.waiter, c.waiter_latency_ms, c.updates, c.first_candle) == (
        [60_000], True, 100, "closed", "backfill")
    assert c.effective_rest_url == "https://api.bybit.com"
    assert structure_options(KlineConfig, {"testnet": True}).effective_rest_url == (
        "https://api-testnet.bybit.com")
    c = structure_options(KlineConfig, {"intervals": ["1m", "1W"], "updates": "throttled"})
    assert c.interval_ms == [60_000, WEEK_MS]


@pytest.mark.parametrize(("options", "message"), [
    ({"intervals": ["2m"]}, "unknown kline interval"),
    ({"intervals": []}, "at least one"),
    ({"intervals": ["1m", "1m"]}, "twice"),
    ({"waiter_latency_ms": 79}, "between 80 and 150"),
    ({"waiter_latency_ms": 151}, "between 80 and 150"),
    ({"updates": "sometimes"}, "updates"),
    ({"first_candle": "guess"}, "first_candle"),
    ({"update_interval_ms": 10}, "update_interval_ms"),
    ({"rest_url": "ftp://x"}, "rest_url"),
    ({"colour": "red"}, "colour"),
])
def test_bad_config_is_rejected_clearly(options, message):
    with pytest.raises(ConfigError, match=message):
        structure_options(KlineConfig, options)


def test_passthrough_config():
    assert structure_options(PassthroughConfig, {}).updates == "closed"
    with pytest.raises(ConfigError, match="unknown kline interval"):
        structure_options(PassthroughConfig, {"intervals": ["7m"]})
