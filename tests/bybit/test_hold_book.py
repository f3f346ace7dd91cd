"""The hold book's rules, one by one, with no I/O: what gap recovery lets through, holds back,
releases and drops (the live source's outlet and the replay's mirror both run it)."""

from __future__ import annotations

from streamer._events import Ticker, Trade
from streamer._metrics import Metrics
from streamer_bybit.hold_book import HoldBook


def trade(ts: int, tid: str, symbol: str = "BTCUSDT") -> Trade:
    return Trade("linear", symbol, ts, "Buy", "1", "1", tid)


TICKER = Ticker("linear", "BTCUSDT", 21, {"lastPrice": 1.0})


def delivered(book: HoldBook, symbol: str) -> tuple[int, frozenset[str]]:
    window = book.delivered[symbol]
    return window.newest_ts, window.ids()


def test_idle_book_passes_the_read_itself_and_notes_what_went():
    book = HoldBook(Metrics(), 10)
    read = [trade(10, "a"), TICKER, trade(10, "b"), trade(11, "e", "ETHUSDT")]
    assert book.live(read) is read
    assert delivered(book, "BTCUSDT") == (10, {"a", "b"})
    assert delivered(book, "ETHUSDT") == (11, {"e"})
    assert book.idle and book.held_count == 0


def test_after_a_reconnect_the_trades_of_held_symbols_wait_and_the_rest_passes():
    book = HoldBook(Metrics(), 10)
    book.live([trade(10, "a")])
    book.hold(["BTCUSDT"])
    read = [trade(30, "l1"), TICKER, trade(31, "e1", "ETHUSDT"), trade(32, "l2")]
    assert book.live(read) == [TICKER, read[2]]
    assert book.held_count == 2 and not book.over
    assert book.held["BTCUSDT"].first_live == trade(30, "l1")
    assert book.held["BTCUSDT"].trades == [trade(30, "l1"), trade(32, "l2")]
    # Held trades are not delivered yet: the mark stays the last trade before the loss.
    assert delivered(book, "BTCUSDT") == (10, {"a"})
    assert delivered(book, "ETHUSDT") == (31, {"e1"})


def test_a_settled_symbol_releases_its_recovered_trades_then_its_held_ones_in_order():
    metrics = Metrics()
    book = HoldBook(metrics, 10)
    book.hold(["BTCUSDT", "ETHUSDT"])
    book.live([trade(30, "l1"), trade(31, "e1", "ETHUSDT"), trade(32, "l2")])
    out = book.settle("BTCUSDT", [trade(20, "r1"), trade(25, "r2")], quiet=False)
    assert out == [trade(20, "r1"), trade(25, "r2"), trade(30, "l1"), trade(32, "l2")]
    assert book.held_count == 1 and list(book.held) == ["ETHUSDT"]
    assert delivered(book, "BTCUSDT") == (32, {"l2"})
    # From now on BTCUSDT passes directly; ETHUSDT still waits.
    assert book.live([trade(33, "l3"), trade(34, "e2", "ETHUSDT")]) == [trade(33, "l3")]
    assert book.settle("ETHUSDT", [], quiet=False) == [trade(31, "e1", "ETHUSDT"),
                                                       trade(34, "e2", "ETHUSDT")]
    assert book.idle and book.held_count == 0
    assert metrics.snapshot() == {}


def test_a_recovery_in_parts_releases_the_held_trades_with_the_last_part():
    book = HoldBook(Metrics(), 10)
    book.hold(["BTCUSDT"])
    book.live([trade(30, "l1")])
    assert book.settle("BTCUSDT", [trade(20, "r1")], quiet=False, more=True) == [
        trade(20, "r1")]
    assert book.settle("BTCUSDT", [trade(25, "r2")], quiet=False) == [
        trade(25, "r2"), trade(30, "l1")]
    assert book.idle


def test_live_trades_a_quiet_symbols_recovery_covers_are_dropped_until_one_is_not():
    metrics = Metrics()
    book = HoldBook(metrics, 10)
    book.hold(["BTCUSDT"])
    recovered = [trade(10, "a"), trade(20, "b"), trade(20, "c")]
    assert book.settle("BTCUSDT", recovered, quiet=True) == recovered
    assert not book.idle  # deduping
    live = [trade(10, "a"), trade(20, "b"), TICKER, trade(20, "d"), trade(15, "x")]
    # a and b are covered; d is new and ends the filter, so x goes on
    assert book.live(live) == [TICKER, trade(20, "d"), trade(15, "x")]
    assert metrics.snapshot() == {"duplicate_trades": 2}
    assert book.idle
    assert book.live([trade(20, "b")]) == [trade(20, "b")]  # no filter any more


def test_past_max_held_every_held_trade_goes_at_once_and_is_counted():
    metrics = Metrics()
    book = HoldBook(metrics, 3)
    book.hold(["BTCUSDT", "ETHUSDT"])
    assert book.live([trade(30, "b1"), trade(30, "e1", "ETHUSDT")]) == []
    assert not book.over
    assert book.live([trade(31, "b2"), trade(31, "e2", "ETHUSDT")]) == []
    assert book.over and book.held_count == 4
    assert book.release_held() == [trade(30, "b1"), trade(31, "b2"),
                                   trade(30, "e1", "ETHUSDT"), trade(31, "e2", "ETHUSDT")]
    assert not book.over and book.held_count == 0
    assert delivered(book, "BTCUSDT") == (31, {"b2"})
    # Released: their live trades pass at once, their recovered ones follow late.
    assert book.live([trade(32, "b3")]) == [trade(32, "b3")]
    assert book.settle("BTCUSDT", [trade(20, "r1"), trade(21, "r2")], quiet=False) == [
        trade(20, "r1"), trade(21, "r2")]
    assert metrics.snapshot() == {"recovery_hold_overflows": 1, "late_recovered_trades": 2}
    # The newest delivered stays the newest live trade: the late ones are older.
    assert delivered(book, "BTCUSDT") == (32, {"b3"})


def test_stopping_mid_recovery_releases_the_held_trades_noted_as_delivered():
    book = HoldBook(Metrics(), 10)
    book.live([trade(10, "a"), trade(11, "e0", "ETHUSDT")])
    book.hold(["BTCUSDT", "ETHUSDT"])
    book.live([trade(30, "l1"), trade(31, "e1", "ETHUSDT"), trade(31, "l2")])
    assert book.release_all() == [trade(30, "l1"), trade(31, "l2"),
                                  trade(31, "e1", "ETHUSDT")]
    assert book.idle and book.held_count == 0
    # A restarted source recovers from after them.
    assert delivered(book, "BTCUSDT") == (31, {"l2"})
    assert delivered(book, "ETHUSDT") == (31, {"e1"})


def test_a_lost_session_drops_held_trades_and_hands_back_the_symbols_released_early():
    book = HoldBook(Metrics(), 2)
    book.hold(["BTCUSDT"])
    book.live([trade(30, "b1"), trade(31, "b2"), trade(32, "b3")])
    assert book.over
    book.release_held()
    book.hold(["ETHUSDT"])
    book.live([trade(40, "e1", "ETHUSDT")])
    book.settle("SOLUSDT", [trade(5, "s1", "SOLUSDT")], quiet=True)  # dedupe filter
    lost = book.end_session()
    assert list(lost) == ["BTCUSDT"] and lost["BTCUSDT"].first_live == trade(30, "b1")
    # ETHUSDT stays held for the next session, with nothing held and no first live trade.
    assert list(book.held) == ["ETHUSDT"]
    assert book.held["ETHUSDT"].trades == [] and book.held["ETHUSDT"].first_live is None
    assert book.held_count == 0 and not book.dedupe
    assert "ETHUSDT" not in book.delivered  # e1 never went downstream


def test_without_tracking_nothing_is_noted():
    book = HoldBook(Metrics(), 10, track_delivered=False)
    book.live([trade(10, "a")])
    book.hold(["BTCUSDT"])
    book.live([trade(30, "l1")])
    assert book.settle("BTCUSDT", [trade(20, "r")], quiet=False) == [
        trade(20, "r"), trade(30, "l1")]
    assert book.delivered == {}
