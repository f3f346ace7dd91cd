"""Bybit's interval codes (streamer_bybit.intervals): the kline topics' and REST's names for
the core's interval labels."""

from __future__ import annotations

import pytest

from streamer.intervals import INTERVALS, interval_label, parse_interval
from streamer_bybit.intervals import CODES, bybit_code, interval_of_code


def test_bybit_codes_round_trip_every_named_label() -> None:
    assert [bybit_code(parse_interval(label)) for label in INTERVALS] == [
        "1", "3", "5", "15", "30", "60", "120", "240", "360", "720", "D", "W", "M"]
    assert list(CODES) == list(INTERVALS)
    for label, ms in INTERVALS.items():
        assert interval_of_code(CODES[label]) == ms
        assert interval_label(interval_of_code(CODES[label])) == label


def test_errors_of_code_lookups() -> None:
    with pytest.raises(ValueError, match="no Bybit interval is 90000 ms long"):
        bybit_code(90_000)
    with pytest.raises(ValueError, match="unknown Bybit interval code 'X'"):
        interval_of_code("X")
