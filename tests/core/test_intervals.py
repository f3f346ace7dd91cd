"""The interval table every plugin shares: labels, ms on the wire, boundaries; the Bybit
plugin's codes for them."""

from __future__ import annotations

import datetime as dt

import pytest

from streamer.intervals import (
    DAY_MS,
    INTERVALS,
    MONTH_MS,
    interval,
    interval_label,
    interval_of_ms,
    parse_interval,
)


def utc(*args: int) -> int:
    return int(dt.datetime(*args, tzinfo=dt.timezone.utc).timestamp() * 1000)


def test_named_labels_and_ms_round_trip() -> None:
    assert parse_interval("1m") == 60_000
    assert parse_interval("4h") == 14_400_000
    assert parse_interval("1D") == 86_400_000
    assert parse_interval("1W") == 604_800_000
    for label, ms in INTERVALS.items():
        assert interval_label(ms) == label


@pytest.mark.parametrize(("label", "ms"), [
    ("100ms", 100), ("500ms", 500), ("1s", 1000), ("10s", 10_000), ("90s", 90_000),
    ("50m", 3_000_000), ("2h", 7_200_000), ("1D", DAY_MS), ("2W", 14 * DAY_MS),
    ("2M", 2 * MONTH_MS), ("12M", 12 * MONTH_MS), ("366D", 366 * DAY_MS),
])
def test_any_n_unit_from_100ms_round_trips(label: str, ms: int) -> None:
    assert parse_interval(label) == ms
    assert interval_label(ms) == label
    assert interval_of_ms(ms) == interval(label)


@pytest.mark.parametrize(("bad", "why"), [
    ("60m", "write 60m as 1h"), ("1000ms", "write 1000ms as 1s"), ("7D", "write 7D as 1W"),
    ("30D", "wire interval of 1M"), ("50ms", "out of range"), ("367D", "out of range"),
    ("13M", "at most 12M"), ("1d", ""), ("0m", ""), ("1.5h", ""), ("", ""), ("m", ""),
])
def test_unknown_labels_are_clear_errors(bad: str, why: str) -> None:
    with pytest.raises(ValueError, match=rf"unknown kline interval '{bad}'; valid intervals: "
                                         rf"1m, 5m, 1h, .*{why}"):
        parse_interval(bad)


def test_errors_of_lookups() -> None:
    with pytest.raises(ValueError, match="calendar months are not available here"):
        parse_interval("1M", allow_month=False)
    with pytest.raises(ValueError, match="no kline interval is 50 ms long"):
        interval_label(50)


def test_fixed_boundaries_are_epoch_aligned_weeks_on_monday() -> None:
    ts = utc(2024, 1, 3, 12, 34, 56) + 789
    assert interval("500ms").start(ts) == ts - 289
    assert interval("10s").start(ts) == utc(2024, 1, 3, 12, 34, 50)
    assert interval("50m").start(ts) == ts - ts % 3_000_000
    assert interval("1W").start(ts) == utc(2024, 1, 1)  # a Monday
    two_weeks = interval("2W")
    start = two_weeks.start(ts)
    assert dt.datetime.fromtimestamp(start / 1000, dt.timezone.utc).weekday() == 0
    assert two_weeks.end(start) == start + 14 * DAY_MS
    assert two_weeks.next_boundary(start) == start + 14 * DAY_MS


def test_months_follow_the_calendar() -> None:
    one, two = interval("1M"), interval("2M")
    assert one.start(utc(2024, 2, 29, 23, 59)) == utc(2024, 2, 1)
    assert one.end(utc(2024, 2, 1)) == utc(2024, 3, 1)  # 29 days: a leap February
    assert one.end(utc(2024, 12, 1)) == utc(2025, 1, 1)
    assert two.start(utc(2024, 2, 10)) == utc(2024, 1, 1)  # Jan+Feb, Mar+Apr, ...
    assert two.start(utc(2024, 4, 30)) == utc(2024, 3, 1)
    assert two.end(utc(2024, 11, 1)) == utc(2025, 1, 1)
    assert one.ms == MONTH_MS  # nominal on the wire


def test_divides_says_which_candles_compose_which() -> None:
    m1, m5, h1, d1, w1, mo1 = (interval(x) for x in ("1m", "5m", "1h", "1D", "1W", "1M"))
    assert m1.divides(m5) and m5.divides(h1) and m1.divides(interval("50m"))
    assert d1.divides(w1) and d1.divides(mo1) and mo1.divides(interval("2M"))
    assert not w1.divides(mo1) and not mo1.divides(d1) and not m5.divides(interval("7m"))
    assert not interval("1m").divides(interval("90s"))
    assert w1.divides(interval("2W")) and not interval("3D").divides(w1)
