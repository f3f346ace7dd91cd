"""The "orderbook" stream end to end: the source against the fake over real WebSockets
(MockClock), each fault the fake injects detected, resubscribed over the wire and reported
(log, counters, a book StreamGap opened then closed); the books emitted equal the fake's."""

from __future__ import annotations

import trio
from bybit.harness import Collector, make_source, run_source

from streamer import Book
from streamer.book import OrderBook

TOPIC = "orderbook.50.BTCUSDT"


def _consumer(collector: Collector, symbol: str = "BTCUSDT") -> OrderBook:
    """The book a consumer builds from the events alone (every delta must follow on)."""
    book = OrderBook()
    for e in collector.of(Book):
        if e.symbol != symbol:
            continue
        if e.kind == "snapshot":
            assert book.snapshot(e.bids, e.asks, e.update_id) == "ok"
        else:
            assert book.delta(e.bids, e.asks, e.update_id) == "ok"
    return book


async def _settle(fake, collector: Collector, n: int) -> None:
    """Wait until ``n`` book events were emitted."""
    with trio.fail_after(30):
        await collector.wait_for(lambda ev: sum(1 for e in ev if isinstance(e, Book)) >= n)


async def test_each_fault_over_the_wire_is_resubscribed_reported_and_recovered(
    fake_bybit, collector, autojump_clock, caplog
):
    source = make_source(fake_bybit, symbols=["BTCUSDT", "ETHUSDT"], streams=["orderbook"],
                         book_depth=50, coalesce_ms=0, book_stale_s=2.0)
    metrics = source.context.metrics
    async with trio.open_nursery() as nursery:
        await run_source(nursery, source, collector)
        await _settle(fake_bybit, collector, 2)  # both snapshots
        expected = {"drop": "book_gaps", "duplicate": "book_gaps", "swap": "book_gaps",
                    "crossed": "book_crossed", "silent": "book_stale"}
        for fault, counter in expected.items():
            before = metrics[counter]
            resyncs = metrics["book_resyncs"]
            subs = fake_bybit.total_connections_opened
            fake_bybit.books.inject("linear", TOPIC, fault)
            for _ in range(3):
                fake_bybit.push_book("linear", TOPIC)
                fake_bybit.push_book("linear", "orderbook.50.ETHUSDT")
                await trio.sleep(0.01)
            if fault == "silent":  # past book_stale_s; ETHUSDT goes on
                for _ in range(6):
                    fake_bybit.push_book("linear", "orderbook.50.ETHUSDT")
                    await trio.sleep(0.5)
            with trio.fail_after(30):
                while metrics["book_resyncs"] < resyncs + 1 or collector.gaps[-1].closed is False:
                    await trio.sleep(0.01)
            assert metrics[counter] == before + 1, fault
            assert fake_bybit.total_connections_opened == subs  # resubscribed, not reconnected
            for _ in range(2):
                fake_bybit.push_book("linear", TOPIC)
            await trio.sleep(0.05)
            true = fake_bybit.books.book("linear", TOPIC).levels()
            assert _consumer(collector).top() == true, fault
            assert source.connections[0].books.books["BTCUSDT"].book.top() == true
        eth = fake_bybit.books.book("linear", "orderbook.50.ETHUSDT").levels()
        assert _consumer(collector, "ETHUSDT").top() == eth
        book_gaps = [g for g in collector.gaps if g.data_type == "book"]
        assert [(g.symbols, g.closed) for g in book_gaps] == [(("BTCUSDT",), False),
                                                             (("BTCUSDT",), True)] * 5
        assert metrics["book_resyncs"] == 5
        assert metrics["malformed"] == 0
        samples = {s.name: s.value for s in metrics.samples()}
        assert samples["book_stale_seconds"] > 0
        assert "resubscribing orderbook.50.BTCUSDT for a fresh snapshot" in caplog.text
        nursery.cancel_scope.cancel()


async def test_a_reconnect_leaves_no_level_of_the_old_book(fake_bybit, collector,
                                                          autojump_clock):
    source = make_source(fake_bybit, symbols=["BTCUSDT"], streams=["orderbook"],
                         book_depth=50, coalesce_ms=0, book_stale_s=30.0)
    async with trio.open_nursery() as nursery:
        await run_source(nursery, source, collector)
        for _ in range(30):
            fake_bybit.push_book("linear", TOPIC)
        await _settle(fake_bybit, collector, 31)
        # The fake's book changes while the source is away; then a u = 1 reset with empty
        # sides (delisting) and a relisting.
        fake_bybit.drop_connections("linear")
        fake_bybit.books.book("linear", TOPIC).reset(empty=True)
        for _ in range(5):
            fake_bybit.books.book("linear", TOPIC).step()
        with trio.fail_after(60):
            while fake_bybit.connection_count("linear") < 1 or not [
                    g for g in collector.gaps if g.data_type == "book" and g.closed]:
                await trio.sleep(0.05)
        true = fake_bybit.books.book("linear", TOPIC).levels()
        assert _consumer(collector).top() == true
        assert len(true[0]) + len(true[1]) < 20  # the old book had 100 levels
        nursery.cancel_scope.cancel()


async def test_a_refused_book_topic_is_not_resubscribed(fake_bybit, collector, autojump_clock):
    fake_bybit.refused_topics.add("orderbook.50.ETHUSDT")
    source = make_source(fake_bybit, symbols=["BTCUSDT", "ETHUSDT"], streams=["orderbook"],
                         book_depth=50, coalesce_ms=0, book_stale_s=1.0)
    async with trio.open_nursery() as nursery:
        await run_source(nursery, source, collector)
        await trio.sleep(1.5)
        # BTCUSDT, silent, stale once; ETHUSDT was refused: never judged, never resubscribed.
        assert source.context.metrics["book_resyncs"] == 1
        assert source.context.metrics["book_stale"] == 1
        assert source.connections[0].books.books.keys() == {"BTCUSDT"}
        nursery.cancel_scope.cancel()


async def test_depth_1_snapshots_repeat_the_same_u_and_staleness_waits_3_s_more(
    fake_bybit, collector, autojump_clock
):
    """Depth 1 is snapshots only, repeated with the same ``u`` every 3 s when nothing
    changed: none of that is a fault; a silence past 3 s + 3 x 10 ms (+ coalesce_ms) is."""
    topic = "orderbook.1.BTCUSDT"
    source = make_source(fake_bybit, symbols=["BTCUSDT"], streams=["orderbook"],
                         book_depth=1, coalesce_ms=0)
    metrics = source.context.metrics
    async with trio.open_nursery() as nursery:
        await run_source(nursery, source, collector)
        start = trio.current_time()
        for _ in range(3):
            fake_bybit.push_book("linear", topic)
            await trio.sleep(0.01)
        for _ in range(3):
            await trio.sleep(2.9)
            fake_bybit.push_book("linear", topic, unchanged=True)
        await trio.sleep(0.01)
        books = collector.of(Book)
        assert [b.kind for b in books] == ["snapshot"] * 7
        assert [b.update_id for b in books[-4:]] == [books[-4].update_id] * 4
        assert metrics["book_gaps"] == metrics["book_stale"] == metrics["book_resyncs"] == 0
        true = fake_bybit.books.book("linear", topic).levels()
        assert source.connections[0].books.books["BTCUSDT"].book.top() == true
        assert len(true[0]) == len(true[1]) == 1
        # Silent: stale 3.03 s after the last snapshot, resubscribed, fresh snapshot.
        last = trio.current_time() - 0.01
        with trio.fail_after(10):
            while metrics["book_resyncs"] == 0:
                await trio.sleep(0.0001)
        assert metrics["book_stale"] == 1
        assert round(trio.current_time() - last, 3) == 3.03
        assert trio.current_time() - start > 3 * 2.9
        nursery.cancel_scope.cancel()


async def test_spot_depth_200_is_subscribed_and_checked(fake_bybit, collector, autojump_clock):
    topic = "orderbook.200.BTCUSDT"
    source = make_source(fake_bybit, "spot", symbols=["BTCUSDT"], streams=["orderbook"],
                         book_depth=200, coalesce_ms=0)
    async with trio.open_nursery() as nursery:
        await run_source(nursery, source, collector)
        assert source.connections[0].books.stale_after == 0.6  # 3 x 200 ms (spot)
        for _ in range(5):
            fake_bybit.push_book("spot", topic)
        fake_bybit.books.inject("spot", topic, "swap")
        fake_bybit.push_book("spot", topic)
        with trio.fail_after(10):
            while not [g for g in collector.gaps if g.closed]:
                await trio.sleep(0.01)
        assert source.context.metrics["book_gaps"] == 1
        assert _consumer(collector).top() == fake_bybit.books.book("spot", topic).levels()
        nursery.cancel_scope.cancel()


async def test_the_simulator_pushes_each_depth_at_its_interval(fake_bybit, collector,
                                                               autojump_clock):
    from streamer_bybit.simulator.books import run_books

    source = make_source(fake_bybit, symbols=["BTCUSDT", "ETHUSDT"], streams=["orderbook"],
                         book_depth=200, coalesce_ms=0)
    spot = make_source(fake_bybit, "spot", name="spot", symbols=["BTCUSDT"],
                       streams=["orderbook"], book_depth=200, coalesce_ms=0)
    async with trio.open_nursery() as nursery:
        await run_source(nursery, source, collector)
        await run_source(nursery, spot, collector)
        start = trio.current_time()
        await nursery.start(run_books, fake_bybit)
        await trio.sleep_until(start + 1.005)
        pushes = fake_bybit.books.pushes
        # Linear depth 200 every 100 ms, spot depth 200 every 200 ms.
        assert pushes[("linear", "orderbook.200.BTCUSDT")] == 10
        assert pushes[("linear", "orderbook.200.ETHUSDT")] == 10
        assert pushes[("spot", "orderbook.200.BTCUSDT")] == 5
        await trio.sleep(0.05)
        books = collector.of(Book)
        assert len(books) == 3 + 25  # the snapshots, then every delta
        assert source.context.metrics["book_stale"] == spot.context.metrics["book_stale"] == 0
        assert _consumer(collector, "ETHUSDT").top() == fake_bybit.books.book(
            "linear", "orderbook.200.ETHUSDT").levels()
        nursery.cancel_scope.cancel()
