"""What the replay drops again that the live source's gap recovery dropped."""

from __future__ import annotations

from streamer.api import StreamGap
from streamer.events import Ticker, Trade
from streamer.metrics import Metrics
from streamer_bybit.replay import RecoveryMirror

SYMBOLS = ("BTCUSDT", "ETHUSDT")


def trade(ts: int, tid: str, symbol: str = "BTCUSDT") -> Trade:
    return Trade("linear", symbol, ts, "Buy", "1", "1", tid)


def test_live_trades_covered_by_a_quiet_symbols_recovery_are_duplicates_until_one_is_not():
    mirror = RecoveryMirror(Metrics())
    recovered = [trade(10, "a"), trade(20, "b"), trade(20, "c")]
    assert mirror.recovered(1, 2, "BTCUSDT", True, recovered) == recovered
    ticker = Ticker("linear", "BTCUSDT", 21, {"lastPrice": 1.0})
    live = [trade(20, "b"), ticker, trade(20, "d"), trade(15, "x"), trade(5, "y", "ETHUSDT")]
    # b is covered; d is new (and ends the filter), so x goes on; ETHUSDT was not recovered
    assert mirror.live(1, 2, live) == live[1:]
    assert mirror.metrics["duplicate_trades"] == 1 and not mirror.active
    # another session (conn 3) never had that filter
    mirror.recovered(1, 2, "BTCUSDT", True, recovered)
    assert mirror.live(1, 3, [trade(20, "b")]) == [trade(20, "b")]


def test_a_not_quiet_recovery_filters_nothing_live():
    mirror = RecoveryMirror(Metrics())
    mirror.recovered(1, 2, "BTCUSDT", False, [trade(10, "a")])
    assert not mirror.active


def test_recovered_trades_already_read_live_during_the_gap_are_not_emitted_twice():
    """The live source dropped the held trades of a session lost mid-recovery and recovered
    them in the next; the replay had emitted them from the socket reads."""
    mirror = RecoveryMirror(Metrics())
    mirror.on_gap(StreamGap("linear", SYMBOLS, 5))
    held = [trade(30, "h1"), trade(31, "h2")]
    assert mirror.live(1, 2, held) == held
    again = [trade(20, "r1"), *held, trade(32, "r2")]
    assert mirror.recovered(1, 3, "BTCUSDT", False, again) == [trade(20, "r1"), trade(32, "r2")]
    mirror.on_gap(StreamGap("linear", SYMBOLS, 5, closed=True))
    assert not mirror.active and mirror.id_count == 0
    assert mirror.recovered(1, 4, "BTCUSDT", False, held) == held


def test_the_ids_kept_during_a_gap_are_bounded():
    mirror = RecoveryMirror(Metrics())
    mirror.MAX_IDS = 100  # type: ignore[misc]
    mirror.on_gap(StreamGap("linear", SYMBOLS, 5))
    mirror.live(1, 2, [trade(i, str(i)) for i in range(250)])
    assert mirror.id_count == 100 and mirror.metrics["replay_gap_ids_full"] == 150


def test_the_duplicate_filters_are_bounded():
    mirror = RecoveryMirror(Metrics())
    mirror.MAX_WINDOWS = 10  # type: ignore[misc]
    for conn in range(50):
        mirror.recovered(1, conn, "BTCUSDT", True, [trade(10, "a")])
    assert len(mirror.quiet) == 10 and (1, 49, "BTCUSDT") in mirror.quiet
