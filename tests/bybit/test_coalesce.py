"""Read coalescing (``coalesce_ms``): fewer wake-ups, bounded delay, heartbeat and
cancellation unchanged. Time is trio's MockClock (``autojump_clock``); the fake is real."""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import attrs
import pytest
import trio
from bybit.harness import Collector, make_source, run_source

from streamer._events import Event, Trade
from streamer_bybit.connection import BybitConnection
from streamer_bybit.source import BybitLinearConfig, BybitSource


class TimedCollector(Collector):
    """A Collector that also notes the trio time of every emit."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []
        #: The task that emitted last (the connection's reader).
        self.task: trio.lowlevel.Task | None = None

    async def __call__(self, batch: list[Event]) -> None:
        self.times.append(trio.current_time())
        self.task = trio.lowlevel.current_task()
        await super().__call__(batch)


@attrs.define
class Run:
    """A running source on the fake (one connection, BTCUSDT trades) and what it emitted."""

    source: BybitSource
    collector: TimedCollector
    nursery: trio.Nursery

    @property
    def connection(self) -> BybitConnection:
        return self.source.connections[0]

    def counts(self) -> tuple[int, int]:
        """(reads, coalescing waits) of the connection so far."""
        return self.connection.reads, self.connection.waits


Start = Callable[..., AbstractAsyncContextManager[Run]]


@pytest.fixture
def start(fake_bybit) -> Start:
    """``async with start(coalesce_ms, **options) as run``: a source on the fake, subscribed
    to BTCUSDT trades without gap recovery, under ``trio.fail_after(timeout)`` (100 s by
    default); cancelled when the block ends."""

    @asynccontextmanager
    async def started(coalesce_ms: float, timeout: float = 100,
                      **options: Any) -> AsyncIterator[Run]:
        collector = TimedCollector()
        source = make_source(fake_bybit, symbols=["BTCUSDT"], recover_gaps=False,
                             coalesce_ms=coalesce_ms, **options)
        with trio.fail_after(timeout):
            async with trio.open_nursery() as nursery:
                await run_source(nursery, source, collector)
                yield Run(source, collector, nursery)
                nursery.cancel_scope.cancel()

    return started


async def _trickle(fake, n: int, every: float) -> list[float]:
    """``n`` one-trade messages, ``every`` seconds apart; their trio send times."""
    sent = []
    for _ in range(n):
        sent.append(trio.current_time())
        fake.trade("linear", "BTCUSDT")
        await trio.sleep(every)
    return sent


def _delays(collector: TimedCollector, sent: list[float]) -> list[float]:
    """Per trade (in order), trio time from its send to the emit that carried it."""
    out = []
    for batch, at in zip(collector.batches, collector.times, strict=True):
        for event in batch:
            if isinstance(event, Trade):
                out.append(at - sent[len(out)])
    return out


@pytest.mark.parametrize(("coalesce_ms", "max_batches"), [(0, 20), (20, 7)])
async def test_coalescing_groups_messages_within_its_delay(
    fake_bybit, start, autojump_clock, coalesce_ms, max_batches
):
    async with start(coalesce_ms) as run:
        sent = await _trickle(fake_bybit, 20, 0.005)
        await run.collector.wait_for(lambda ev: len(ev) == 20)
    collector = run.collector
    delays = _delays(collector, sent)
    assert len(delays) == 20
    if coalesce_ms == 0:
        assert len(collector.batches) == 20  # one wake-up per message
        assert max(delays) < 1e-3
    else:
        # 20 messages over 100 ms, one read per 20 ms at most: 5 or 6 reads, not 20.
        assert 3 <= len(collector.batches) <= max_batches
        assert max(delays) <= coalesce_ms / 1000 + 1e-6
        assert any(len(b) > 1 for b in collector.batches)


class _StepCounter(trio.abc.Instrument):
    """Counts the scheduler steps of one task (``task``, once known)."""

    def __init__(self) -> None:
        self.task: trio.lowlevel.Task | None = None
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            self.steps += 1


async def test_a_read_after_the_wait_takes_one_scheduler_step(fake_bybit, start, autojump_clock):
    """The wait is the read's checkpoint: the reader wakes from it, reads what gathered,
    hands it on and waits again, all in one step of its task. (Through trio's socket it
    would yield once more after the read: a second pass of the scheduler, with its own
    epoll_wait, per read.)"""
    counter = _StepCounter()
    async with start(20) as run:
        fake_bybit.trade("linear", "BTCUSDT")
        await run.collector.wait_for(lambda ev: len(ev) == 1)
        counter.task = run.collector.task
        trio.lowlevel.add_instrument(counter)
        await _trickle(fake_bybit, 40, 0.005)  # 200 ms: ~10 reads of ~4 messages
        await run.collector.wait_for(lambda ev: len(ev) == 41)
        trio.lowlevel.remove_instrument(counter)
    reads = len(run.collector.batches) - 1
    assert 8 <= reads <= 12
    # one step per read, plus at most one where the wait found the socket still empty
    assert reads <= counter.steps <= reads + 1


async def test_a_large_read_is_not_followed_by_the_wait(fake_bybit, start, autojump_clock):
    """A burst larger than one read comes in at once: the wait would only cap throughput."""
    async with start(100) as run:
        await trio.sleep(1)  # past the wait that followed the subscribe ack
        began = trio.current_time()
        for _ in range(600):  # ~600 x 250 B: more than two 64 KiB reads
            fake_bybit.trade("linear", "BTCUSDT")
        await run.collector.wait_for(lambda ev: len(ev) == 600)
        took = trio.current_time() - began
    assert len(run.collector.batches) >= 2  # it did take several reads
    assert took < 0.05  # not one 100 ms wait per read


async def test_heartbeat_and_staleness_unchanged_by_coalescing(
    fake_bybit, start, caplog, autojump_clock
):
    caplog.set_level(logging.WARNING)
    async with start(100, timeout=1000, stale_timeout=30) as run:
        source = run.source
        # quiet but alive for 5 minutes (pongs and a trade now and then): no reconnect
        await _trickle(fake_bybit, 10, 30.0)
        assert fake_bybit.connections[0].pings_received >= 14
        assert source.metrics["stale"] == 0
        assert source.metrics["reconnects"] == 0
        # then one trade and silence, pongs included: stale 30 s after that trade, not
        # 30 s plus the wait
        fake_bybit.ignore_pings = True
        lost_at = trio.current_time()
        fake_bybit.trade("linear", "BTCUSDT")
        # The trade arrives at lost_at (loopback costs no virtual time): stale exactly
        # 30 s later. Looked at 1 us either side, since a timer restarted after the
        # 100 ms wait would only fire at 30.1 s.
        await trio.sleep_until(lost_at + 30 - 1e-6)
        assert source.metrics["stale"] == 0
        await trio.sleep_until(lost_at + 30 + 1e-6)
        assert source.metrics["stale"] == 1
    assert "no data and no pong for 30 s" in caplog.text


async def test_cancelled_during_the_wait_stops_at_once(fake_bybit, start, autojump_clock):
    async with start(100) as run:
        fake_bybit.trade("linear", "BTCUSDT")
        await run.collector.wait_for(lambda ev: len(ev) == 1)
        # the reader is now in its 100 ms wait
        cancelled_at = trio.current_time()
    assert run.counts()[1] >= 1
    assert trio.current_time() - cancelled_at < 0.05


@pytest.mark.parametrize("value", [-1, 100.5, 1000, math.nan, math.inf])
def test_coalesce_ms_outside_its_range_is_refused(value):
    with pytest.raises(ValueError, match="coalesce_ms: expected 0 to 100"):
        BybitLinearConfig(symbols=["BTCUSDT"], coalesce_ms=value)


@pytest.mark.parametrize("value", [0, 5, 100])
def test_coalesce_ms_in_range_is_accepted(value):
    assert BybitLinearConfig(symbols=["BTCUSDT"], coalesce_ms=value).coalesce_ms == value


async def test_in_real_time_the_wait_groups_reads_and_a_cancel_ends_it(fake_bybit, start):
    """Under trio's system clock the wait is a timerfd (streamer.net.WakeTimer), not trio's
    timer: the same grouping and the same bound on a message's wait, in real time (bounds
    only: the machine is shared), and cancelling the session mid-wait still ends it."""
    async with start(50, timeout=30) as run:
        sent = await _trickle(fake_bybit, 20, 0.01)  # 200 ms: ~4-5 waits of 50 ms
        await run.collector.wait_for(lambda ev: len(ev) == 20)
        fake_bybit.trade("linear", "BTCUSDT")
        await run.collector.wait_for(lambda ev: len(ev) == 21)
        cancelled_at = trio.current_time()  # the reader is in its 50 ms wait
    collector = run.collector
    assert trio.current_time() - cancelled_at < 0.045  # before the wait would have ended
    delays = _delays(collector, [*sent, cancelled_at])[:20]
    assert len(collector.batches) <= 12  # not 20 reads
    assert any(len(b) > 1 for b in collector.batches)
    # a message waits the wait plus the handling of a read, on a loaded machine at most
    # a few scheduler delays more; never the 20 x 10 ms of the trickle
    assert max(delays) < 0.05 + 0.1


async def test_sparse_traffic_skips_the_wait_until_reads_come_close_again(
    fake_bybit, start, autojump_clock
):
    """Messages further apart than the wait: a wait would gather nothing and only add a
    wake-up per message, so after one such wait the reader waits no more, one scheduler step
    per message; once two reads come within the wait of each other it waits again."""
    counter = _StepCounter()
    async with start(20) as run:
        collector = run.collector
        fake_bybit.trade("linear", "BTCUSDT")
        await collector.wait_for(lambda ev: len(ev) == 1)
        await trio.sleep(0.1)  # its wait gathered nothing
        counter.task = collector.task
        trio.lowlevel.add_instrument(counter)
        before = run.counts()
        sparse_sent = await _trickle(fake_bybit, 10, 0.05)  # 50 ms apart, wait 20 ms
        await collector.wait_for(lambda ev: len(ev) == 11)
        trio.lowlevel.remove_instrument(counter)
        sparse_steps = counter.steps
        after_sparse = run.counts()
        batches_before = len(collector.batches)
        await _trickle(fake_bybit, 40, 0.005)  # 5 ms apart: the wait groups them again
        await collector.wait_for(lambda ev: len(ev) == 51)
        after_dense = run.counts()
    # each sparse message: its socket wake-up only (was 2 steps: that, and the wait's end)
    assert sparse_steps == 10
    assert (after_sparse[0] - before[0], after_sparse[1] - before[1]) == (10, 0)
    assert collector.times[1:11] == pytest.approx(sparse_sent, abs=1e-9)  # no delay added
    # 5 ms apart: the 2nd read comes within 20 ms of the 1st, and from it on every read is
    # followed by the wait (the message due as a wait ends comes just after its read)
    dense = [len(b) for b in collector.batches[batches_before:]]
    assert dense == [1, 1, 3] + [4] * 8 + [3]
    assert (after_dense[0] - after_sparse[0], after_dense[1] - after_sparse[1]) == (12, 11)


async def test_the_wait_stays_on_where_it_gathers_one_or_two_messages_a_read(
    fake_bybit, start, autojump_clock
):
    """A message every 16 ms with a 20 ms wait (as 250 msg/s, order books at depth 1000, with
    the default 5 ms): a wait gathers 1 or 2 messages, never none, and it is kept: measured,
    a read cycle after the wait costs ~1.15x one woken by the socket, so at ~1.3 messages a
    read the wait still pays (docs/plugins/bybit.md, "The coalescing wait")."""
    async with start(20) as run:
        collector = run.collector
        fake_bybit.trade("linear", "BTCUSDT")
        await collector.wait_for(lambda ev: len(ev) == 1)
        await trio.sleep(0.1)  # the wait after it gathered nothing: off
        before, batches_before = run.counts(), len(collector.batches)
        sent = await _trickle(fake_bybit, 60, 0.016)
        await collector.wait_for(lambda ev: len(ev) == 61)
        after = run.counts()
    sizes = [len(b) for b in collector.batches[batches_before:]]
    reads, waits = after[0] - before[0], after[1] - before[1]
    # The 1st message after the quiet spell: no wait; the 2nd came within 20 ms of it, and
    # from it on every read is followed by the wait: 60 messages in 49 reads, 48 waits.
    assert sizes == [1, 1] + [1, 1, 1, 1, 2, 1, 1] + [1, 2, 1, 1] * 10
    assert (reads, waits) == (49, 48)
    # a message waits at most the wait
    assert max(_delays(collector, [0.0, *sent])[1:]) <= 0.020 + 1e-9


async def test_at_five_messages_a_wait_the_wait_stays_on(fake_bybit, start, autojump_clock):
    """A message every 4 ms with a 20 ms wait (as 1,000 msg/s with the default 5 ms): every
    read is followed by the wait, and each read carries ~5 messages."""
    async with start(20) as run:
        collector = run.collector
        fake_bybit.trade("linear", "BTCUSDT")
        await collector.wait_for(lambda ev: len(ev) == 1)
        await trio.sleep(0.1)  # off, as after any quiet spell
        before, batches_before = run.counts(), len(collector.batches)
        await _trickle(fake_bybit, 200, 0.004)
        await collector.wait_for(lambda ev: len(ev) == 201)
        after = run.counts()
    sizes = [len(b) for b in collector.batches[batches_before:]]
    reads, waits = after[0] - before[0], after[1] - before[1]
    # the 2nd read within 20 ms of the 1st, then a read per wait of 5 messages
    assert sizes == [1, 1, 4] + [5] * 38 + [4]
    assert (reads, waits) == (42, 41)
