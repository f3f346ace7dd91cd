"""streamer.book.OrderBook and streamer_bybit.book_keeper.BookKeeper, pure: exact
outcomes of each message (continuity, resets, crossed, staleness)."""

from __future__ import annotations

import logging
import random
import sys

import pytest

from streamer import Book, Metrics, RateLimitedLog, StreamGap
from streamer.book import OrderBook
from streamer_bybit.book_keeper import BookKeeper
from streamer_bybit.simulator.books import SimBook


def test_snapshot_replaces_the_book_whole_no_ghost_level():
    book = OrderBook()
    assert book.snapshot([["100", "1"], ["99", "2"]], [["101", "3"]], 5) == "ok"
    assert book.delta([["98", "4"]], [["102", "5"]], 6) == "ok"
    assert book.top() == ([["100", "1"], ["99", "2"], ["98", "4"]], [["101", "3"], ["102", "5"]])
    assert book.snapshot([["50", "1"]], [], 1) == "ok"
    assert book.top() == ([["50", "1"]], [])
    assert book.snapshot([], [], 1) == "ok"
    assert book.top() == ([], [])


def test_delta_deletes_inserts_and_replaces_by_price_number():
    book = OrderBook()
    book.snapshot([["100.0", "1"], ["99", "2"]], [["101", "3"]], 1)
    assert book.delta([["100", "0"], ["99.5", "7"], ["99", "9"]], [["101", "0"]], 2) == "ok"
    assert book.top() == ([["99.5", "7"], ["99", "9"]], [])
    assert book.delta([["1", "0"]], [], 3) == "ok"  # deleting a level that is not there
    assert book.top(1) == ([["99.5", "7"]], [])



def test_a_side_whose_prices_come_and_go_keeps_the_table_of_a_fresh_dict():
    """The fake's full depth-1000 book, 3,000 messages (10 minutes at depth 1000's pace; the
    1,000th and 2,000th a snapshot, a resync; deltas between): each side's levels dict never
    grows past the size a fresh dict of the same levels has (a churned dict is resized by
    CPython to twice that), and the book stays the true book exactly."""
    sim = SimBook("BTCUSDT", 1000, random.Random(7), full=True)
    book = OrderBook()
    data = sim.snapshot_data()
    assert book.snapshot(data["b"], data["a"], data["u"]) == "ok"
    for i in range(3000):
        if i % 1000 == 999:
            data = sim.snapshot_data()
            assert book.snapshot(data["b"], data["a"], data["u"]) == "ok"
        else:
            data = sim.step()
            assert book.delta(data["b"], data["a"], data["u"]) == "ok"
        if i % 50 == 0 or i == 2999:
            for side in (book.bids, book.asks):
                levels = side._levels
                assert sys.getsizeof(levels) == sys.getsizeof(dict(levels)), i
                assert len(side) == len(levels) == 1000
    assert book.top() == sim.levels()

@pytest.mark.parametrize("u", [1, 2, 4, 10])
def test_a_delta_out_of_sequence_is_a_gap_and_changes_nothing(u):
    book = OrderBook()
    book.snapshot([["100", "1"]], [["101", "1"]], 2)
    assert book.delta([["100", "5"]], [], u) == "gap"
    assert book.top() == ([["100", "1"]], [["101", "1"]])
    assert book.update_id == 2


def test_a_delta_without_a_snapshot_is_a_gap():
    assert OrderBook().delta([], [], 1) == "gap"


@pytest.mark.parametrize("bid", ["101", "102"])
def test_locked_or_crossed_after_a_message(bid):
    book = OrderBook()
    assert book.snapshot([[bid, "1"]], [["101", "1"]], 1) == "crossed"
    book.snapshot([["100", "1"]], [["101", "1"]], 1)
    assert book.delta([[bid, "1"]], [], 2) == "crossed"


@pytest.mark.parametrize("level", [["x", "1"], ["100", "-1"], ["0", "1"], ["nan", "1"],
                                   ["100", "inf"], ["100"]])
def test_a_level_that_is_no_number_raises_and_leaves_no_book(level):
    book = OrderBook()
    with pytest.raises(ValueError):
        book.snapshot([["99", "1"], level], [], 1)
    assert book.top() == ([], []) and book.update_id is None


def _keeper(metrics: Metrics, symbols=("BTCUSDT",)) -> BookKeeper:
    return BookKeeper("linear", 50, list(symbols), 0.06, metrics,
                      RateLimitedLog(logging.getLogger("test.book")), "bybit#0")


def test_keeper_emits_exact_books_and_drops_the_broken_one_until_a_snapshot():
    metrics = Metrics()
    k = _keeper(metrics)
    out: list = []
    k.on_message("BTCUSDT", "delta", [["1", "1"]], [], 7, None, None, 1, 0.0, out)
    assert out == [] and metrics["book_dropped_deltas"] == 1
    k.on_message("BTCUSDT", "snapshot", [["100", "1"]], [["101", "2"]], 7, 55, 999, 1000, 0.0,
                 out)
    k.on_message("BTCUSDT", "delta", [["100", "0"]], [], 8, 56, 1000, 1001, 0.0, out)
    assert out == [
        Book("linear", "BTCUSDT", "snapshot", [["100", "1"]], [["101", "2"]], 7, 1000, 55, 999),
        Book("linear", "BTCUSDT", "delta", [["100", "0"]], [], 8, 1001, 56, 1000),
    ]
    k.on_message("BTCUSDT", "delta", [["99", "1"]], [], 10, 57, 1002, 1002, 0.0, out)  # 9 lost
    assert len(out) == 2
    assert metrics["book_gaps"] == 1
    assert k.take_resync(100.0) == {"BTCUSDT": "gap"} and metrics["book_resyncs"] == 1
    assert k.take_gaps() == [StreamGap("linear", ("BTCUSDT",), 1001, data_type="book")]
    k.on_message("BTCUSDT", "delta", [["99", "1"]], [], 11, 58, 1003, 1003, 0.0, out)
    assert len(out) == 2 and metrics["book_dropped_deltas"] == 2
    k.on_message("BTCUSDT", "snapshot", [["98", "1"]], [["103", "1"]], 20, 60, 1004, 1004, 0.0,
                 out)
    assert out[-1].kind == "snapshot" and out[-1].bids == [["98", "1"]]
    assert k.take_gaps() == [StreamGap("linear", ("BTCUSDT",), 1001, closed=True,
                                       data_type="book")]
    assert k.books["BTCUSDT"].book.top() == ([["98", "1"]], [["103", "1"]])


def test_keeper_u1_reset_counts_and_replaces():
    metrics = Metrics()
    k = _keeper(metrics)
    out: list = []
    k.on_message("BTCUSDT", "snapshot", [["100", "1"], ["90", "1"]], [["101", "2"]], 7, None,
                 None, 1, 0.0, out)
    k.on_message("BTCUSDT", "snapshot", [], [], 1, None, None, 2, 0.0, out)
    assert metrics["book_resets"] == 1 and metrics["book_gaps"] == 0
    assert out[-1] == Book("linear", "BTCUSDT", "snapshot", [], [], 1, 2)
    assert k.books["BTCUSDT"].book.top() == ([], [])
    k.on_message("BTCUSDT", "delta", [["50", "1"]], [], 2, None, None, 3, 0.0, out)
    assert k.books["BTCUSDT"].book.top() == ([["50", "1"]], [])


def test_keeper_staleness_is_judged_once_armed_and_not_while_resubscribing():
    metrics = Metrics()
    k = _keeper(metrics, ("A", "B"))
    out: list = []
    assert k.stale(100.0) == [] and k.next_deadline() is None
    k.arm(1.0)
    assert k.next_deadline() == pytest.approx(1.06)
    k.on_message("A", "snapshot", [["1", "1"]], [["2", "1"]], 3, None, None, 5, 1.05, out)
    assert k.stale(1.07) == ["B"]
    assert metrics["book_stale"] == 1
    assert k.stale(5.0) == ["A"]  # B waits for its resubscribe: not judged
    k.take_resync(100.0)
    k.resubscribed("B", 5.0)
    k.on_message("B", "snapshot", [["1", "1"]], [["2", "1"]], 3, None, None, 6, 5.02, out)
    assert k.stale_seconds == pytest.approx(5.02 - 1.0)
    assert metrics["book_stale"] == 2


def test_keeper_drops_a_book_with_more_levels_than_its_depth():
    metrics = Metrics()
    k = _keeper(metrics)
    out: list = []
    levels = [[str(100 - i), "1"] for i in range(50)]
    k.on_message("BTCUSDT", "snapshot", levels, [["101", "1"]], 1, None, None, 1, 0.0, out)
    assert len(out) == 1
    k.on_message("BTCUSDT", "delta", [["10", "1"]], [], 2, None, None, 2, 0.0, out)
    assert len(out) == 1 and metrics["book_overfull"] == 1
    assert k.take_resync(100.0) == {"BTCUSDT": "overfull"}
    assert k.books["BTCUSDT"].book.top() == ([], [])


def test_a_symbol_is_resubscribed_at_most_once_per_spacing():
    metrics = Metrics()
    k = _keeper(metrics, ("A", "B"))
    out: list = []
    crossed = ([["2", "1"]], [["1", "1"]])
    k.on_message("A", "snapshot", *crossed, 1, None, None, 1, 10.0, out)
    assert k.take_resync(10.0) == {"A": "crossed"}
    k.resubscribed("A", 10.01)
    k.on_message("A", "snapshot", *crossed, 1, None, None, 2, 10.02, out)  # crossed again
    k.on_message("B", "snapshot", *crossed, 1, None, None, 2, 10.02, out)
    assert k.take_resync(10.5) == {"B": "crossed"}  # A waits: resubscribed 0.5 s ago
    assert k.next_resync() == 11.0
    assert k.take_resync(10.99) == {}
    assert k.take_resync(11.0) == {"A": "crossed"}
    assert k.next_resync() is None
    assert metrics["book_resyncs"] == 3 and metrics["book_crossed"] == 3
    assert out == []


def test_time_held_downstream_is_not_the_books_silence():
    metrics = Metrics()
    k = _keeper(metrics)  # stale after 0.06 s
    out: list = []
    k.arm(0.0)
    k.on_message("BTCUSDT", "snapshot", [["1", "1"]], [["2", "1"]], 3, None, None, 5, 0.0, out)
    k.emitted(0.0, 0.01)  # a short emit (under a quarter of the limit): nothing excused
    assert k.next_deadline() == 0.06
    k.emitted(0.0, 1.0)  # the reader was held a second by a sink
    assert k.stale(1.05) == [] and k.next_deadline() == 1.06
    assert k.stale(1.06) == ["BTCUSDT"]
