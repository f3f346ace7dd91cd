"""The trade_coverage table against a real PostgreSQL: which time ranges of a symbol the sink
says it stored whole, through stream gaps (placed among the events as the core places them:
``note_gap(gap, inbox.position)`` right after the events before it were queued), a refused
batch, a shutdown into the spool and a crash; and the sink's stored history answering only
for those ranges.

Trades are ``pg_helpers.trade(i)``: stamped T0 + i, price 100 + i + 0.5, size 0.001."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import trio
from pg_helpers import T0, make_context, make_sink, running, trade, trade_ids, wait_until
from postgres_server import PASSWORD, PASSWORD_ENV, PostgresServer
from server_process import free_port, start_on_free_ports

from streamer import Inbox, StreamGap
from streamer_postgres.config import PostgresSinkConfig
from streamer_postgres.coverage import CLEAN_MARK
from streamer_postgres.sink import PostgresSink

EPOCH_MS = "(extract(epoch FROM {}) * 1000)::bigint"


def segments(server, schema: str) -> list[tuple[str, int, int, bool]]:
    """(symbol, from - T0, to - T0, open) of every coverage row, oldest first."""
    with server.connect() as conn:
        return [(symbol, begin - T0, end - T0, is_open) for symbol, begin, end, is_open in
                conn.execute(f"SELECT symbol, {EPOCH_MS.format('from_ts')}, "
                             f"{EPOCH_MS.format('to_ts')}, open FROM {schema}.trade_coverage "
                             "ORDER BY symbol, from_ts")]


def trades(first: int, last: int, **kwargs) -> list:
    return [trade(i, **kwargs) for i in range(first, last + 1)]


def summary_of(first: int, last: int) -> tuple:
    """What the stored history must answer for the trades first..last (all of one symbol)."""
    prices = [Decimal(f"{100 + i}.5") for i in range(first, last + 1)]
    size = Decimal("0.001")
    return (last - first + 1, str(prices[0]), str(max(prices)), str(min(prices)),
            str(prices[-1]), str(size * len(prices)), str(sum(p * size for p in prices)))


def as_tuple(summary, start: int, until: int):
    if summary is None:
        return None
    assert (summary.start_ms, summary.until_ms) == (T0 + start, T0 + until)
    return (summary.count, summary.open, summary.high, summary.low, summary.close,
            summary.volume, summary.turnover)


async def ask(sink, start: int, until: int, symbol: str = "BTCUSDT"):
    (summary,) = await sink.stored_history.trades_summaries("linear", symbol,
                                                            [(T0 + start, T0 + until)])
    return as_tuple(summary, start, until)


async def put(sink, inbox, events) -> None:
    """Queue ``events`` and wait until they and the steps behind them are written."""
    written = sink.writer.written_rows + len(events)
    await inbox.put(events)
    await wait_until(lambda: sink.writer.written_rows >= written
                     and not sink.writer._has_work())


async def test_a_segment_covers_from_after_its_first_trade_to_before_its_newest(
        postgres_server, postgres_schema):
    sink = make_sink(postgres_server, postgres_schema, history_wait=0)
    with trio.fail_after(30):
        async with running(sink) as inbox:
            await put(sink, inbox, trades(0, 9))
            await put(sink, inbox, trades(10, 19) + trades(5, 7, symbol="ETHUSDT"))
            assert segments(postgres_server, postgres_schema) == [
                ("BTCUSDT", 1, 19, True), ("ETHUSDT", 6, 7, True)]
            assert await ask(sink, 1, 19) == summary_of(1, 18)
            assert await ask(sink, 3, 4) == summary_of(3, 3)
            assert await ask(sink, 19, 19) == (0, None, None, None, None, "0", "0")
            # Trades of T0 may have come before we listened; trades of T0 + 19 may follow.
            assert await ask(sink, 0, 19) is None
            assert await ask(sink, 1, 20) is None
            assert await ask(sink, 1, 5, symbol="SOLUSDT") is None
            # Several ranges in one question: one answer each, in order.
            ranges = [(1, 19), (0, 5), (3, 4)]
            answers = await sink.stored_history.trades_summaries(
                "linear", "BTCUSDT", [(T0 + a, T0 + b) for a, b in ranges])
            assert [as_tuple(s, a, b) for s, (a, b) in zip(answers, ranges, strict=True)] == [
                summary_of(1, 18), None, summary_of(3, 3)]
    # A clean stop closes the segments: nobody waits for them to grow.
    assert segments(postgres_server, postgres_schema) == [
        ("BTCUSDT", 1, 19, False), ("ETHUSDT", 6, 7, False)]
    assert sink.context.metrics["history_answers"] == 5
    assert sink.context.metrics["history_unknown"] == 4


async def test_a_gap_closed_incomplete_ends_the_segment_where_the_gap_began(
        postgres_server, postgres_schema):
    sink = make_sink(postgres_server, postgres_schema, history_wait=0)
    with trio.fail_after(30):
        async with running(sink) as inbox:
            # The core's order: the events go into the inbox, then the gap is noted with the
            # inbox position; the sink has taken none of them yet.
            await inbox.put(trades(0, 10))
            sink.note_gap(StreamGap("linear", ("BTCUSDT",), T0 + 10), inbox.position)
            await inbox.put(trades(20, 25))  # recovered while the gap is open: a part only
            sink.note_gap(StreamGap("linear", ("BTCUSDT",), T0 + 10, closed=True,
                                    complete=False), inbox.position)
            await inbox.put(trades(30, 40))
            await wait_until(lambda: not sink.writer._has_work()
                             and sink.writer.written_rows == 28)
            assert segments(postgres_server, postgres_schema) == [
                ("BTCUSDT", 1, 10, False), ("BTCUSDT", 31, 40, True)]
            assert await ask(sink, 1, 10) == summary_of(1, 9)
            assert await ask(sink, 5, 35) is None
            assert await ask(sink, 11, 30) is None
            assert await ask(sink, 31, 40) == summary_of(31, 39)


async def test_a_gap_closed_complete_keeps_the_segment_whole(postgres_server,
                                                            postgres_schema):
    sink = make_sink(postgres_server, postgres_schema, history_wait=0)
    with trio.fail_after(30):
        async with running(sink) as inbox:
            await inbox.put(trades(0, 10))
            sink.note_gap(StreamGap("linear", ("BTCUSDT",), T0 + 10), inbox.position)
            # Another stream's gap, never closed: not the trades' concern.
            sink.note_gap(StreamGap("linear", ("BTCUSDT",), T0 + 5, data_type="liquidations"),
                          inbox.position)
            await inbox.put(trades(11, 25))  # every missed trade recovered
            sink.note_gap(StreamGap("linear", ("BTCUSDT",), T0 + 10, closed=True),
                          inbox.position)
            await inbox.put(trades(26, 40))
            await wait_until(lambda: not sink.writer._has_work()
                             and sink.writer.written_rows == 41)
            assert segments(postgres_server, postgres_schema) == [("BTCUSDT", 1, 40, True)]
            assert await ask(sink, 1, 40) == summary_of(1, 39)


async def test_a_refused_batch_ends_the_segment_before_it(postgres_server, postgres_schema):
    sink = make_sink(postgres_server, postgres_schema, history_wait=0)
    bad = trades(11, 20)
    bad[4] = msgspec.structs.replace(bad[4], price="no number")
    with trio.fail_after(30):
        async with running(sink) as inbox:
            await put(sink, inbox, trades(0, 10))
            await inbox.put(bad)
            await wait_until(lambda: sink.context.metrics["unwritable_rows"] == 10)
            await put(sink, inbox, trades(21, 30))
    # The refused batch's step is lost with it: the first segment stays where it was (a
    # segment ended by a loss is not closed: it stops looking live after a while). The
    # next trade begins a new one.
    assert segments(postgres_server, postgres_schema) == [
        ("BTCUSDT", 1, 10, True), ("BTCUSDT", 22, 30, False)]


async def test_a_question_waits_for_a_segment_another_writer_is_extending(
        postgres_server, postgres_schema):
    replica = make_sink(postgres_server, postgres_schema, name="replica")
    asking = make_sink(postgres_server, postgres_schema, name="asking", history_wait=10)
    answers: list = []

    async def question() -> None:
        answers.append(await ask(asking, 1, 15))

    with trio.fail_after(30):
        async with running(replica) as inbox:
            await put(replica, inbox, trades(0, 10))
            async with trio.open_nursery() as nursery:
                nursery.start_soon(question)
                # It found the segment open, recent and short of T0 + 15: it waits.
                await wait_until(lambda: asking.context.metrics["history_polls"] >= 1)
                assert answers == []
                await inbox.put(trades(11, 20))
            assert answers == [summary_of(1, 14)]
        # Closed (its writer stopped) and short of the time asked: no wait.
        started = trio.current_time()
        assert await ask(asking, 1, 25) is None
        assert trio.current_time() - started < 1.0


async def test_a_shutdown_into_the_spool_carries_the_coverage_to_the_next_run(
        postgres_server, postgres_schema, tmp_path):
    assert await _run_into_the_spool(postgres_schema, tmp_path, crash=False) == 20
    assert (tmp_path / CLEAN_MARK).exists()
    second = make_sink(postgres_server, postgres_schema, spool_dir=str(tmp_path))
    with trio.fail_after(30):
        async with running(second):
            await wait_until(lambda: second.writer.written_rows == 20
                             and not second.writer._has_work())
    assert segments(postgres_server, postgres_schema) == [("BTCUSDT", 1, 19, False)]
    assert not (tmp_path / CLEAN_MARK).exists()


async def test_after_a_crash_the_spooled_rows_are_stored_but_claim_no_coverage(
        postgres_server, postgres_schema, tmp_path):
    spooled = await _run_into_the_spool(postgres_schema, tmp_path, crash=True)
    assert 10 <= spooled < 20
    assert not (tmp_path / CLEAN_MARK).exists()
    second = make_sink(postgres_server, postgres_schema, spool_dir=str(tmp_path))
    with trio.fail_after(30):
        async with running(second) as inbox:
            await wait_until(lambda: second.writer.written_rows == spooled
                             and not second.writer._has_work())
            # The spooled rows are newer than the memory buffer the crash lost: their steps
            # would claim it. This run's own segments count again.
            await put(second, inbox, trades(40, 45))
    assert segments(postgres_server, postgres_schema) == [("BTCUSDT", 41, 45, False)]


async def test_a_crash_loses_the_memory_buffer_whose_claim_the_spool_holds(monkeypatch,
                                                                           tmp_path):
    """The case the clean mark is for: one batch split between the memory buffer (its
    trades) and the spool (the step behind them). The crash loses the buffer; the step
    would extend the stored segment over trades that are not stored."""
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    server = start_on_free_ports(PostgresServer, PostgresServer.start, PostgresServer.stop)
    try:
        sink = make_sink(server, "market", max_buffer=5, spool_dir=str(tmp_path))
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                inbox = Inbox("test", 100, "block")
                await nursery.start(sink.run, inbox)
                await put(sink, inbox, trades(0, 3))
                assert segments(server, "market") == [("BTCUSDT", 1, 3, True)]
                server.kill()
                # 4..8 fill the buffer, 9..11 and the step (3, 11) go to pending, and with
                # 12..13 into a spool file.
                await inbox.put(trades(4, 11))
                await wait_until(lambda: inbox.taken_events == 12)
                await inbox.put(trades(12, 13))
                await wait_until(lambda: sink.writer.spool is not None
                                 and len(sink.writer.spool) == 1)
                nursery.cancel_scope.cancel()  # the crash
            server.start()
            second = make_sink(server, "market", spool_dir=str(tmp_path))
            async with running(second):
                await wait_until(lambda: second.writer.written_rows == 4
                                 and not second.writer._has_work())
        assert sorted(trade_ids(server, "market")) == sorted(f"t{i}" for i in (0, 1, 2, 3, 9,
                                                                                10, 11, 12))
        assert segments(server, "market") == [("BTCUSDT", 1, 3, True)]
    finally:
        server.stop()


async def _run_into_the_spool(schema: str, spool, *, crash: bool) -> int:
    """Trades 0..19 into a sink whose database is unreachable, 5 rows of memory buffer: the
    rest goes to spool files. ``crash``: the sink is cancelled (what it holds in memory is
    gone, as in a crash), else it shuts down and spools what it still holds. Returns the
    rows in the spool then."""
    config = PostgresSinkConfig(
        dsn=f"postgresql://streamer@127.0.0.1:{free_port()}/postgres",
        password_env=PASSWORD_ENV, schema=schema, max_buffer=5, spool_dir=str(spool),
        shutdown_timeout=0.3, reconnect_initial=0.05, reconnect_max=0.2, connect_timeout=1)
    sink = PostgresSink(config, make_context("first"))
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            inbox = Inbox("test", 100, "block")
            await nursery.start(sink.run, inbox)
            for i in range(0, 20, 2):
                await inbox.put(trades(i, i + 1))
            await wait_until(lambda: sink.writer.spool is not None
                             and sink.writer.spool.rows >= 10)
            if crash:
                nursery.cancel_scope.cancel()
            else:
                inbox.close()
    assert sink.writer.spool is not None
    return sink.writer.spool.rows


def test_gaps_waiting_for_their_place_are_bounded() -> None:
    from streamer_postgres.gap_notes import MAX_WAITING, GapNotes

    notes = GapNotes()
    gap = StreamGap("linear", ("BTCUSDT",), T0)
    assert all(notes.add(gap, i + 1) for i in range(MAX_WAITING))
    assert not notes.add(gap, MAX_WAITING + 1)  # the oldest goes: the caller ends coverage
    assert len(notes) == MAX_WAITING
    events = trades(0, 2)
    # The waiting gaps now begin at position 2: after the first two events, then 3.
    assert list(notes.place(events, 0)) == [events[:2], gap, events[2:], gap]
    assert len(notes) == MAX_WAITING - 2
