"""The interval table every plugin shares: config labels, ms, Bybit codes."""

from __future__ import annotations

import pytest

from streamer.intervals import (
    INTERVALS,
    bybit_code,
    interval_label,
    interval_of_code,
    parse_interval,
)


def test_labels_ms_and_codes_round_trip() -> None:
    assert parse_interval("1m") == 60_000
    assert parse_interval("4h") == 14_400_000
    assert parse_interval("1D") == 86_400_000
    assert parse_interval("1W") == 604_800_000
    assert [bybit_code(parse_interval(label)) for label in INTERVALS] == [
        "1", "3", "5", "15", "30", "60", "120", "240", "360", "720", "D", "W", "M"]
    for label, (ms, code) in INTERVALS.items():
        assert interval_label(ms) == label
        assert interval_of_code(code) == ms


def test_unknown_labels_are_clear_errors() -> None:
    for bad in ("60m", "1d", "0m", "1.5h", ""):
        with pytest.raises(ValueError, match=r"valid intervals: 1m, 3m, 5m"):
            parse_interval(bad)
    with pytest.raises(ValueError, match=r"valid intervals: .*1W$"):
        parse_interval("1M", allow_month=False)
    with pytest.raises(ValueError, match="no kline interval is 90000 ms long"):
        interval_label(90_000)
    with pytest.raises(ValueError, match="unknown Bybit interval code 'X'"):
        interval_of_code("X")
