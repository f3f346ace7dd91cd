"""The replay holds, releases and drops live trades as the live source's gap recovery did,
from the HOLDING and RECOVERED records."""

from __future__ import annotations

from streamer._events import Ticker, Trade
from streamer._metrics import Metrics
from streamer_bybit.capture_format import HoldingBody, RecoveredBody
from streamer_bybit.replay import RecoveryMirror


def trade(ts: int, tid: str, symbol: str = "BTCUSDT") -> Trade:
    return Trade("linear", symbol, ts, "Buy", "1", "1", tid)


def hold(mirror: RecoveryMirror, conn: int, symbols=("BTCUSDT",), max_held=100) -> None:
    mirror.holding(1, conn, HoldingBody("linear#0", list(symbols), max_held))


def settled(symbol: str, trades, quiet=False, holding=True, more=False) -> RecoveredBody:
    return RecoveredBody(symbol, list(trades), quiet, holding, more)


def test_held_live_trades_follow_their_recovered_ones():
    mirror = RecoveryMirror(Metrics())
    hold(mirror, 2)
    ticker = Ticker("linear", "BTCUSDT", 21, {"lastPrice": 1.0})
    live = [trade(30, "l1"), ticker, trade(31, "e1", "ETHUSDT"), trade(32, "l2")]
    assert mirror.live(1, 2, live) == [ticker, live[2]]  # BTCUSDT's trades wait
    assert mirror.recovered(1, 2, settled("BTCUSDT", [trade(20, "r1")], more=True)) == [
        trade(20, "r1")]
    assert mirror.recovered(1, 2, settled("BTCUSDT", [trade(25, "r2")])) == [
        trade(25, "r2"), live[0], live[3]]
    assert mirror.live(1, 2, [trade(40, "l3")]) == [trade(40, "l3")]  # streams directly


def test_past_max_held_every_held_trade_goes_at_once():
    mirror = RecoveryMirror(Metrics())
    hold(mirror, 2, ("BTCUSDT", "ETHUSDT"), max_held=3)
    first = [trade(30, "b1"), trade(30, "e1", "ETHUSDT")]
    assert mirror.live(1, 2, first) == []
    more = [trade(31, "b2"), trade(31, "e2", "ETHUSDT")]
    assert mirror.live(1, 2, more) == [first[0], more[0], first[1], more[1]]
    assert mirror.live(1, 2, [trade(32, "b3")]) == [trade(32, "b3")]
    # the recovered trades come later, alone
    assert mirror.recovered(1, 2, settled("BTCUSDT", [trade(20, "r")], holding=False)) == [
        trade(20, "r")]
    # counted as the live source counted them
    assert mirror.metrics.snapshot() == {"recovery_hold_overflows": 1,
                                         "late_recovered_trades": 1}


def test_live_trades_covered_by_a_quiet_symbols_recovery_are_duplicates_until_one_is_not():
    mirror = RecoveryMirror(Metrics())
    hold(mirror, 2)
    recovered = [trade(10, "a"), trade(20, "b"), trade(20, "c")]
    assert mirror.recovered(1, 2, settled("BTCUSDT", recovered, quiet=True)) == recovered
    live = [trade(20, "b"), trade(20, "d"), trade(15, "x")]
    # b is covered; d is new (and ends the filter), so x goes on
    assert mirror.live(1, 2, live) == live[1:]
    assert mirror.metrics["duplicate_trades"] == 1


def test_a_session_lost_before_it_settled_drops_what_it_held():
    mirror = RecoveryMirror(Metrics())
    hold(mirror, 2)
    assert mirror.live(1, 2, [trade(30, "h1")]) == []
    hold(mirror, 3)  # the next session of the same connection recovers h1 from REST
    assert (1, 2) not in mirror.sessions
    assert mirror.recovered(1, 3, settled("BTCUSDT", [trade(30, "h1")])) == [trade(30, "h1")]


def test_without_a_holding_record_nothing_is_held():
    mirror = RecoveryMirror(Metrics())
    live = [trade(30, "l1")]
    assert mirror.live(1, 2, live) == live
    assert mirror.recovered(1, 2, settled("BTCUSDT", [trade(20, "r")])) == [trade(20, "r")]


def test_a_settled_session_stops_being_filtered():
    mirror = RecoveryMirror(Metrics())
    hold(mirror, 2)
    mirror.recovered(1, 2, settled("BTCUSDT", []))
    assert mirror.live(1, 2, [trade(1, "a")]) == [trade(1, "a")]
    assert not mirror.sessions  # the replay's fast path again
