"""Interval alignment (1W and 1M as Bybit and the fake align them), config validation."""

from __future__ import annotations

import datetime as dt

import pytest

from streamer._config import ConfigError, structure_options
from streamer.intervals import WEEK_MS, candle_start, parse_interval
from streamer.testing import config_errors
from streamer_aggregate.config import KlineConfig, PassthroughConfig


def test_the_aggregator_takes_the_core_labels():
    c = structure_options(KlineConfig, {"intervals": ["500ms", "10s", "1m", "50m", "2h", "1D",
                                                      "1W", "1M", "2M"]})
    assert c.interval_ms == [parse_interval(x) for x in c.intervals]


@pytest.mark.parametrize("bad", ["60m", "60", "1d", "", "1w", "h", "50ms", "30D"])
def test_unknown_interval_says_what_is_valid(bad):
    with pytest.raises(ConfigError, match=r"unknown kline interval .*; valid intervals: 1m, "):
        structure_options(KlineConfig, {"intervals": [bad]})


@pytest.mark.parametrize("ts", [0, 1_700_000_123_456, 1_704_067_200_000, 1_704_067_199_999,
                                1_735_603_200_000, 1_709_251_199_999])
def test_alignment_matches_the_fake_bybit(ts):
    # imported here: the aggregate suite also runs without the Bybit plugin (check-packaging)
    from streamer_bybit.simulator.market import period_start

    codes = {"1m": "1", "3m": "3", "5m": "5", "15m": "15", "30m": "30", "1h": "60",
             "2h": "120", "4h": "240", "6h": "360", "12h": "720", "1D": "D", "1W": "W",
             "1M": "M"}
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
    assert (c.interval_ms, c.waiter, c.waiter_latency_ms, c.updates, c.first_candle,
            c.backfill_timeout_s) == ([60_000], True, 100, "closed", "backfill", 10.0)
    c = structure_options(KlineConfig, {"intervals": ["1m", "1W"], "updates": "throttled"})
    assert c.interval_ms == [60_000, WEEK_MS]


@pytest.mark.parametrize(("options", "message"), [
    ({"intervals": ["60m"]}, "write 60m as 1h"),
    ({"intervals": []}, "at least one"),
    ({"intervals": ["1m", "1m"]}, "twice"),
    ({"waiter_latency_ms": 79}, "waiter_latency_ms: expected 80 to 150, got 79"),
    ({"waiter_latency_ms": 151}, "waiter_latency_ms: expected 80 to 150, got 151"),
    ({"updates": "sometimes"}, "updates"),
    ({"first_candle": "guess"}, "first_candle"),
    ({"update_interval_ms": 10}, "update_interval_ms"),
    ({"backfill_timeout_s": 0}, "backfill_timeout_s"),
    ({"backfill_timeout_s": 301}, "backfill_timeout_s"),
    ({"colour": "red"}, "colour"),
])
def test_bad_config_is_rejected_clearly(options, message):
    with pytest.raises(ConfigError, match=message):
        structure_options(KlineConfig, options)


def test_passthrough_config():
    assert structure_options(PassthroughConfig, {}).updates == "closed"
    assert structure_options(PassthroughConfig, {"intervals": ["7m"]}).interval_ms == {420_000}
    with pytest.raises(ConfigError, match="unknown kline interval"):
        structure_options(PassthroughConfig, {"intervals": ["7x"]})


@pytest.mark.parametrize(("options", "key"), [
    ({"rest_url": "https://api-testnet.bybit.com"}, "rest_url"),
    ({"testnet": True}, "testnet"),
    ({"testnet": False}, "testnet"),
])
def test_rest_url_and_testnet_moved_to_the_source(options, key):
    with pytest.raises(ConfigError) as info:
        structure_options(KlineConfig, options)
    message = str(info.value)
    assert f"{key} is no longer an option of klines.from_trades" in message
    assert "set rest_url / testnet (and ca_file) on the bybit.linear / bybit.spot source" in (
        message)


def test_every_bad_option_is_reported_with_its_path(plugin_manager):
    """Field validators, not a chain that stops at the first: all three show at once."""

    toml = """
[[sources]]
name = "src"
type = "testing.scripted"

[[transforms]]
type = "klines.from_trades"
waiter_latency_ms = 10
update_interval_ms = 1
gap_hold_s = -1

[[sinks]]
type = "testing.collect"
"""
    assert config_errors(toml, plugin_manager) == [
        "s.toml: transforms[0].waiter_latency_ms: expected 80 to 150, got 10",
        "s.toml: transforms[0].update_interval_ms: expected 50 to 3600000, got 1",
        "s.toml: transforms[0].gap_hold_s: expected 0 to 3600, got -1.0",
    ]


def test_klines_verify_reports_both_bad_options_with_their_paths(plugin_manager):

    toml = """
[[sources]]
name = "src"
type = "testing.scripted"

[[transforms]]
type = "klines.verify"
tolerance = 1.5
max_pending = 0

[[sinks]]
type = "testing.collect"
"""
    assert config_errors(toml, plugin_manager) == [
        "s.toml: transforms[0].tolerance: expected at least 0 and less than 1, got 1.5",
        "s.toml: transforms[0].max_pending: expected at least 1, got 0",
    ]


def test_an_unknown_key_lists_only_the_keys_a_user_writes_and_guesses_the_one_meant(
        plugin_manager):
    """Not the field the class fills itself (interval_ms) nor the retired ones (rest_url,
    testnet: they moved to the source); a close match is named."""
    toml = """
[[sources]]
type = "testing.scripted"

[[transforms]]
type = "klines.from_trades"
intervls = ["1m"]

[[sinks]]
type = "testing.collect"
"""
    assert config_errors(toml, plugin_manager) == [
        "s.toml: transforms[0]: unknown key(s) intervls; did you mean `intervals`? expected "
        "one of: intervals, waiter, waiter_latency_ms, updates, update_interval_ms, "
        "fill_gaps, turnover, first_candle, backfill_timeout_s, gap_hold_s"]
    two = toml.replace('intervls = ["1m"]', 'intervls = ["1m"]\nwaitr = true\nzzz = 1')
    assert config_errors(two, plugin_manager)[0].startswith(
        "s.toml: transforms[0]: unknown key(s) intervls, waitr, zzz; did you mean `intervals` "
        "for `intervls`? did you mean `waiter` for `waitr`? expected one of: intervals, ")
    passthrough = toml.replace("klines.from_trades", "klines.passthrough")
    assert config_errors(passthrough, plugin_manager) == [
        "s.toml: transforms[0]: unknown key(s) intervls; did you mean `intervals`? expected "
        "one of: updates, intervals"]
