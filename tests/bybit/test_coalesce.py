"""Read coalescing (``coalesce_ms``): fewer wake-ups, bounded delay, heartbeat and
cancellation unchanged. Time is trio's MockClock (``autojump_clock``); the fake is real."""

from __future__ import annotations

import logging
import math

import pytest
import trio
from bybit.harness import Collector, make_source, run_source

from streamer._events import Event, Trade
from streamer_bybit.source import BybitLinearConfig


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
    fake_bybit, autojump_clock, coalesce_ms, max_batches
):
    collector = TimedCollector()
    source = make_source(fake_bybit, symbols=["BTCUSDT"], recover_gaps=False,
                         coalesce_ms=coalesce_ms)
    with trio.fail_after(100):
        async with trio.open_nursery() as nursery:
            await run_source(nursery, source, collector)
            sent = await _trickle(fake_bybit, 20, 0.005)
            await collector.wait_for(lambda ev: len(ev) == 20)
            nursery.cancel_scope.cancel()
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


async def test_a_read_after_the_wait_takes_one_scheduler_step(fake_bybit, autojump_clock):
    """The wait is the read's checkpoint: the reader wakes from it, reads what gathered,
    hands it on and waits again, all in one step of its task. (Through trio's socket it
    would yield once more after the read: a second pass of the scheduler, with its own
    epoll_wait, per read.)"""
    collector = TimedCollector()
    counter = _StepCounter()
    source = make_source(fake_bybit, symbols=["BTCUSDT"], recover_gaps=False,
                         coalesce_ms=20)
    with trio.fail_after(100):
        async with trio.open_nursery() as nursery:
            await run_source(nursery, source, collector)
            fake_bybit.trade("linear", "BTCUSDT")
            await collector.wait_for(lambda ev: len(ev) == 1)
            counter.task = collector.task
            trio.lowlevel.add_instrument(counter)
            await _trickle(fake_bybit, 40, 0.005)  # 200 ms: ~10 reads of ~4 messages
            await collector.wait_for(lambda ev: len(ev) == 41)
            trio.lowlevel.remove_instrument(counter)
            nursery.cancel_scope.cancel()
    reads = len(collector.batches) - 1
    assert 8 <= reads <= 12
    # one step per read, plus at most one where the wait found the socket still empty
    assert reads <= counter.steps <= reads + 1


async def test_a_large_read_is_not_followed_by_the_wait(fake_bybit, autojump_clock):
    """A burst larger than one read comes in at once: the wait would only cap throughput."""
    collector = TimedCollector()
    source = make_source(fake_bybit, symbols=["BTCUSDT"], recover_gaps=False,
                         coalesce_ms=100)
    with trio.fail_after(100):
        async with trio.open_nursery() as nursery:
            await run_source(nursery, source, collector)
            await trio.sleep(1)  # past the wait that followed the subscribe ack
            start = trio.current_time()
            for _ in range(600):  # ~600 x 250 B: more than two 64 KiB reads
                fake_bybit.trade("linear", "BTCUSDT")
            await collector.wait_for(lambda ev: len(ev) == 600)
            took = trio.current_time() - start
            nursery.cancel_scope.cancel()
    assert len(collector.batches) >= 2  # it did take several reads
    assert took < 0.05  # not one 100 ms wait per read


async def test_heartbeat_and_staleness_unchanged_by_coalescing(
    fake_bybit, caplog, autojump_clock
):
    caplog.set_level(logging.WARNING)
    collector = TimedCollector()
    source = make_source(fake_bybit, symbols=["BTCUSDT"], recover_gaps=False,
                         coalesce_ms=100, stale_timeout=30)
    with trio.fail_after(1000):
        async with trio.open_nursery() as nursery:
            await run_source(nursery, source, collector)
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
            nursery.cancel_scope.cancel()
    assert "no data and no pong for 30 s" in caplog.text


async def test_cancelled_during_the_wait_stops_at_once(fake_bybit, autojump_clock):
    collector = TimedCollector()
    source = make_source(fake_bybit, symbols=["BTCUSDT"], recover_gaps=False,
                         coalesce_ms=100)
    with trio.fail_after(100):
        async with trio.open_nursery() as nursery:
            await run_source(nursery, source, collector)
            fake_bybit.trade("linear", "BTCUSDT")
            await collector.wait_for(lambda ev: len(ev) == 1)
            # the reader is now in its 100 ms wait
            cancelled_at = trio.current_time()
            nursery.cancel_scope.cancel()
    assert trio.current_time() - cancelled_at < 0.05


@pytest.mark.parametrize("value", [-1, 100.5, 1000, math.nan, math.inf])
def test_coalesce_ms_outside_its_range_is_refused(value):
    with pytest.raises(ValueError, match="coalesce_ms: expected 0 to 100"):
        BybitLinearConfig(symbols=["BTCUSDT"], coalesce_ms=value)


@pytest.mark.parametrize("value", [0, 5, 100])
def test_coalesce_ms_in_range_is_accepted(value):
    assert BybitLinearConfig(symbols=["BTCUSDT"], coalesce_ms=value).coalesce_ms == value


async def test_in_real_time_the_wait_groups_reads_and_a_cancel_ends_it(fake_bybit):
    """Under trio's system clock the wait is a timerfd (streamer.net.WakeTimer), not trio's
    timer: the same grouping and the same bound on a message's wait, in real time (bounds
    only: the machine is shared), and cancelling the session mid-wait still ends it."""
    collector = TimedCollector()
    source = make_source(fake_bybit, symbols=["BTCUSDT"], recover_gaps=False,
                         coalesce_ms=50)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await run_source(nursery, source, collector)
            sent = await _trickle(fake_bybit, 20, 0.01)  # 200 ms: ~4-5 waits of 50 ms
            await collector.wait_for(lambda ev: len(ev) == 20)
            fake_bybit.trade("linear", "BTCUSDT")
            await collector.wait_for(lambda ev: len(ev) == 21)
            cancelled_at = trio.current_time()  # the reader is in its 50 ms wait
            nursery.cancel_scope.cancel()
    assert trio.current_time() - cancelled_at < 0.045  # before the wait would have ended
    delays = _delays(collector, [*sent, cancelled_at])[:20]
    assert len(collector.batches) <= 12  # not 20 reads
    assert any(len(b) > 1 for b in collector.batches)
    # a message waits the wait plus the handling of a read, on a loaded machine at most
    # a few scheduler delays more; never the 20 x 10 ms of the trickle
    assert max(delays) < 0.05 + 0.1


async def test_sparse_traffic_skips_the_wait_until_reads_come_close_again(
    fake_bybit, autojump_clock
):
    """Messages further apart than the wait: a wait would gather nothing and only add a
    wake-up per message, so after one such wait the reader waits no more, one scheduler step
    per message; once two reads come within the wait of each other it waits again."""
    collector = TimedCollector()
    counter = _StepCounter()
    source = make_source(fake_bybit, symbols=["BTCUSDT"], recover_gaps=False,
                         coalesce_ms=20)
    with trio.fail_after(100):
        async with trio.open_nursery() as nursery:
            await run_source(nursery, source, collector)
            fake_bybit.trade("linear", "BTCUSDT")
            await collector.wait_for(lambda ev: len(ev) == 1)
            await trio.sleep(0.1)  # its wait gathered nothing
            counter.task = collector.task
            trio.lowlevel.add_instrument(counter)
            sparse_sent = await _trickle(fake_bybit, 10, 0.05)  # 50 ms apart, wait 20 ms
            await collector.wait_for(lambda ev: len(ev) == 11)
            trio.lowlevel.remove_instrument(counter)
            sparse_steps = counter.steps
            batches_before = len(collector.batches)
            await _trickle(fake_bybit, 40, 0.005)  # 5 ms apart: the wait groups them again
            await collector.wait_for(lambda ev: len(ev) == 51)
            nursery.cancel_scope.cancel()
    # each sparse message: its socket wake-up only (was 2 steps: that, and the wait's end)
    assert sparse_steps == 10
    assert collector.times[1:11] == pytest.approx(sparse_sent, abs=1e-9)  # no delay added
    dense = collector.batches[batches_before:]
    assert len(dense) <= 14  # 40 messages over 200 ms: ~10 reads of ~4, not 40
    assert max(len(b) for b in dense) >= 3
