"""streamer.pretty: the human lines of the console sink and ``streamer tail``."""

from __future__ import annotations

from streamer.pretty import envelope_lines, interval_text, utc_time


def test_times_are_utc_with_milliseconds():
    assert utc_time(0) == "1970-01-01T00:00:00.000Z"
    assert utc_time(1_764_143_940_007) == "2025-11-26T07:59:00.007Z"
    assert utc_time("x") == "x" and utc_time(10**20) == str(10**20)


def test_intervals_by_label():
    assert [interval_text(ms) for ms in (500, 15_000, 60_000, 420_000, 86_400_000)] == [
        "500ms", "15s", "1m", "7m", "1D"]
    assert interval_text(0) == "0ms"


def test_kline_lines_say_partial_and_bad_items_show_as_json():
    env = {"channel": "spot", "data_type": "klines", "data": [
        {"symbol": "ETHUSDT", "interval": 86_400_000, "timestamp": 1_764_115_200_000,
         "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 97.048,
         "trade_count": None, "closed": True, "turnover": 3.0, "partial": True},
        {"symbol": "ETHUSDT"}]}
    assert envelope_lines(env) == [
        "spot   klines  ETHUSDT           1D 2025-11-26T00:00:00.000Z closed "
        "O 1 H 2 L 0.5 C 1.5 V 97.048 n None partial",
        'spot   klines  {"symbol":"ETHUSDT"}']
