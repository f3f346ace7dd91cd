"""``bybit.replay``: a source that plays a capture (``capture_dir`` of a Bybit source) back.

Frames go through the live source's decode path (:class:`~streamer_bybit.decode.
MessageDecoder`, one per recorded socket session, with the recorded ticker and price
settings), one batch per recorded socket read, as live.

Time: the source drives the pipeline's clock. It offers :class:`ReplayClock` as its
``trio_clock`` (``streamer run`` runs trio with it) whose wall time is the recorded receive
time: trio time 0 is the moment the capture started. The clock never runs past the next
recorded frame; at ``speed = N`` it flows N times faster than real time up to there, with
``speed = "max"`` it jumps. Before each frame the source moves time to every pending trio
deadline on the way (a kline close, a flush timer), one at a time, and lets every task woken
by it run until blocked (``trio.testing.wait_all_tasks_blocked``: trio's only public "let
everything runnable run"). So timers fire at their recorded moment relative to the frames,
and a timer due at exactly a frame's receive time fires first: replaying a capture twice
gives the same events in the same order, and the same klines as the live run.

Once the replay is over (played to its end, or stopped: a SIGTERM, a fatal error elsewhere)
nothing drives time any more, so the clock runs in real time (1x) from where it stands
(:meth:`ReplayClock.finish`): what follows the replay still has working timers (a sink's
retry backoff, the sinks' shutdown deadline, ``streamer run``'s hard stop).

Gap recovery: what a live source's gap recovery did besides the socket reads is in the
capture as records of its own (the symbols it held after a reconnect, the trades it
recovered from REST, the stream gaps it reported), played at their recorded time; with them
:class:`RecoveryMirror` holds, releases and drops the replayed live trades as the live
source did (it runs the live source's :class:`~streamer_bybit.hold_book.HoldBook`), so the
replay emits the same trades in the same order.

Order books: each session's book messages are checked by a
:class:`~streamer_bybit.book_keeper.BookKeeper` as live, so a replay emits the same ``book``
events and reports the same book gaps; the resubscribe that followed a live fault is in the
capture (its snapshot ends the gap). Staleness is not judged: a live stale book's gap is not
reported again, its resubscribe's snapshot is replayed.

Files are read (:func:`~streamer_bybit.capture_format.read_records`) on the trio thread in
chunks of ``READ_CHUNK`` bytes: a worker thread would leave every task blocked while it
reads, which with ``speed = "max"`` is when time jumps.
"""

from __future__ import annotations

import math
import time
from typing import Any, Final

import msgspec
import trio
import trio.testing

from streamer import Context, Emit, Event, FatalError, Metrics, RateLimitedLog
from streamer_bybit.book_keeper import BookKeeper
from streamer_bybit.capture_format import (
    END,
    FRAMES,
    GAP,
    HEADER,
    HOLDING,
    RECOVERED,
    CaptureFormatError,
    HoldingBody,
    RecoveredBody,
    capture_files,
    read_gap,
    read_header,
    read_holding,
    read_records,
    read_recovered,
)
from streamer_bybit.config import ReplayConfig
from streamer_bybit.decode import MessageDecoder
from streamer_bybit.hold_book import HoldBook
from streamer_bybit.tickers import PriceTracker, TickerBook

#: Records between two checkpoints at ``speed = "max"`` (cancellation stays prompt).
CHECKPOINT_EVERY: Final = 64


# -- time --------------------------------------------------------------------------------


class ReplayClock(trio.abc.Clock):
    """Trio's clock during a replay: trio time 0 is ``start_epoch`` on the wall clock
    (``wall_offset``, read by :mod:`streamer.clock`); time never passes the point the replay
    has reached (:meth:`allow`), and up to there flows ``speed`` times real time (jumps at
    ``speed = inf``). After :meth:`finish` it flows in real time with no ceiling."""

    def __init__(self, start_epoch: float, speed: float) -> None:
        self.wall_offset = start_epoch
        self.speed = speed
        self._ceiling = 0.0
        self._base_virtual = 0.0
        self._base_real = time.perf_counter()

    def start_clock(self) -> None:
        self._base_real = time.perf_counter()

    def current_time(self) -> float:
        if self.speed == math.inf:
            return self._ceiling
        now = self._base_virtual + (time.perf_counter() - self._base_real) * self.speed
        return now if now < self._ceiling else self._ceiling

    def deadline_to_sleep_time(self, deadline: float) -> float:
        now = self.current_time()
        if deadline <= now:
            return 0.0
        target = min(deadline, self._ceiling)
        if target <= now:
            # Time waits for the replay source, which is runnable or waiting on I/O.
            return 3600.0
        return (target - now) / self.speed

    def allow(self, until: float) -> None:
        """Let time advance up to trio time ``until``."""
        if until <= self._ceiling:
            return
        if self.speed != math.inf:
            # Resume from where time stands (it may have been held at the old ceiling).
            self._base_virtual = self.current_time()
            self._base_real = time.perf_counter()
        self._ceiling = until

    def finish(self) -> None:
        """The replay is over: from where it stands, time flows at 1x and nothing holds it."""
        self._base_virtual = self.current_time()
        self._base_real = time.perf_counter()
        self.speed = 1.0
        self._ceiling = math.inf


# -- gap recovery ------------------------------------------------------------------------


class RecoveryMirror:
    """Does to the replayed live trades what the live source's gap recovery did, from the
    capture's HOLDING and RECOVERED records, with the same rules: a
    :class:`~streamer_bybit.hold_book.HoldBook` per recorded socket session (after a
    reconnect the live trades of the symbols being recovered are held, and emitted after
    their recovered trades when the recovery settles, or all at once past ``max_held``; live
    trades covered by the recovery of a quiet symbol are dropped as duplicates until one is
    not). A session lost before its recovery settled drops its book with what it held (the
    next session recovers those trades from REST). Memory: one book per recorded connection,
    at most ``max_held`` trades each (plus one read)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.sessions: dict[tuple[int, int], HoldBook] = {}
        #: (capture, connection name) -> the key of its newest session in ``sessions``
        self._newest: dict[tuple[int, str], tuple[int, int]] = {}

    def holding(self, capture: int, conn: int, body: HoldingBody) -> None:
        previous = self._newest.get((capture, body.connection))
        if previous is not None:
            self.sessions.pop(previous, None)  # lost before it settled: its held trades go
        self._newest[(capture, body.connection)] = (capture, conn)
        book = self.sessions[(capture, conn)] = HoldBook(self.metrics, body.max_held,
                                                         track_delivered=False)
        book.hold(body.symbols)

    def live(self, capture: int, conn: int, events: list[Event]) -> list[Event]:
        book = self.sessions.get((capture, conn))
        if book is None:
            return events
        if book.idle:  # settled and no duplicates left: stream directly
            del self.sessions[(capture, conn)]
            return events
        out = book.live(events)
        if book.over:
            out = book.release_held() + out
        return out

    def recovered(self, capture: int, conn: int, body: RecoveredBody) -> list[Event]:
        book = self.sessions.get((capture, conn))
        if book is None:  # e.g. a file that starts in the middle of a recovery
            return list(body.trades)
        return book.settle(body.symbol, body.trades, quiet=body.quiet, more=body.more)


# -- the source --------------------------------------------------------------------------


class ReplaySource:
    """Plays capture files into the pipeline; returns when the recording ends."""

    def __init__(self, config: ReplayConfig, context: Context) -> None:
        self.config = config
        self.context = context
        self.logger = context.logger
        self.metrics = context.metrics
        self.log = RateLimitedLog(context.logger)
        self.files = capture_files(config.path)
        start_us, header = read_header(self.files[0])
        category = header.get("category") or config.category
        if category not in ("linear", "spot"):
            raise ValueError(f"{self.files[0]}: the capture does not say its category; "
                             'set category = "linear" or "spot"')
        self.category: str = category
        self.header = header
        self.start_us = start_us
        self.trio_clock = ReplayClock(start_us / 1e6, config.speed_factor)
        self.prices = PriceTracker(self.category)
        self.decoders: dict[tuple[int, int], MessageDecoder] = {}
        self.frames = 0
        self.reads = 0
        self.recovered = 0

    def _decoder(self, capture: int, conn: int, header: dict[str, Any]) -> MessageDecoder:
        key = (capture, conn)
        decoder = self.decoders.get(key)
        if decoder is None:
            book = TickerBook(self.category, self.prices,
                              emit_tickers=bool(header.get("emit_tickers", True)),
                              price_field=header.get("ticker_price_field"))
            decoder = self.decoders[key] = MessageDecoder(
                self.category, self.metrics, self.log, book, self.prices,
                price_from_trades=bool(header.get("price_from_trades", False)))
            decoder.books = replay_books(self.category, header, self.metrics, self.log,
                                         self.context.name)
        return decoder

    def _trio_time(self, time_us: int) -> float:
        return time_us / 1e6 - self.trio_clock.wall_offset

    async def _advance(self, target: float) -> None:
        """Move time to ``target``, stopping at every pending deadline on the way and letting
        what wakes there run first."""
        clock = self.trio_clock
        while True:
            now = trio.current_time()
            due = now + trio.lowlevel.current_statistics().seconds_to_next_deadline
            if due > target:
                break
            # At least one step forward: a deadline that rounding puts a hair above ``now``
            # must still expire.
            step = due if due > now else math.nextafter(now, math.inf)
            clock.allow(step)
            await trio.sleep_until(step)
            await trio.testing.wait_all_tasks_blocked()
        if target > trio.current_time():
            clock.allow(target)
            if clock.speed != math.inf:
                await trio.sleep_until(target)
                await trio.testing.wait_all_tasks_blocked()

    async def run(
        self, emit: Emit, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        if trio.lowlevel.current_clock() is not self.trio_clock:
            raise FatalError(
                f"{self.context.name}: bybit.replay drives time itself and needs trio to run "
                "with its clock: start it with `streamer run`, or in code with "
                "trio.run(..., clock=pipeline.trio_clock())")
        try:
            await self._play(emit, task_status)
        finally:
            # Cancelled too (e.g. a SIGTERM while a blocking sink holds the source in emit):
            # the shutdown deadlines and the hard stop are in trio time.
            self.trio_clock.finish()

    async def _play(self, emit: Emit, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        started = time.perf_counter()
        end_us = self.start_us
        since_checkpoint = 0
        mirror = RecoveryMirror(self.metrics)
        for path in self.files:
            header: dict[str, Any] = {}
            capture = 0
            with open(path, "rb") as f:
                try:
                    for kind, time_us, conn, body in read_records(f, str(path)):
                        if kind == FRAMES:
                            if time_us > end_us:
                                end_us = time_us
                                await self._advance(self._trio_time(time_us))
                            events: list[Event] = []
                            # op replies (acks, pongs): ignored
                            decoder = self._decoder(capture, conn, header)
                            decoder.decode_read(body, events)
                            if decoder.books is not None:
                                # The capture holds the resubscribe that followed.
                                decoder.books.take_resync(math.inf)
                                for gap in decoder.books.take_gaps():
                                    await emit.gap(gap)
                            self.frames += len(body)
                            self.reads += 1
                            if events and mirror.sessions:
                                events = mirror.live(capture, conn, events)
                            if events:
                                await emit(events)
                            since_checkpoint += 1
                            if since_checkpoint >= CHECKPOINT_EVERY:
                                since_checkpoint = 0
                                await trio.lowlevel.checkpoint()
                        elif kind == HEADER:
                            header = msgspec.json.decode(body)
                            capture = int(header.get("started_us", time_us))
                        elif kind == GAP or kind == RECOVERED or kind == HOLDING:
                            if time_us > end_us:
                                end_us = time_us
                                await self._advance(self._trio_time(time_us))
                            if kind == GAP:
                                await emit.gap(read_gap(self.category, body))
                            elif kind == HOLDING:
                                mirror.holding(capture, conn, read_holding(body))
                            else:
                                recovered = read_recovered(body)
                                self.recovered += len(recovered.trades)
                                batch = mirror.recovered(capture, conn, recovered)
                                if batch:
                                    await emit(list(batch))
                        elif kind == END and time_us > end_us:
                            end_us = time_us
                except CaptureFormatError as exc:
                    self.metrics.inc("capture_damaged")
                    self.logger.warning("%s: %s; replayed what came before", self.context.name,
                                        exc)
        # The live run went on until the capture stopped: so do its timers here.
        await self._advance(self._trio_time(end_us))
        self.metrics.inc("replayed_frames", self.frames)
        self.metrics.inc("replayed_recovered_trades", self.recovered)
        elapsed = time.perf_counter() - started
        self.logger.info("%s: replayed %d frames (%d reads) from %d file(s) in %.2f s",
                         self.context.name, self.frames, self.reads, len(self.files), elapsed)


def replay_books(category: str, header: dict[str, Any], metrics: Metrics, log: RateLimitedLog,
                 name: str) -> BookKeeper | None:
    """A book keeper for one recorded session whose topics include order books."""
    symbols: dict[int, list[str]] = {}
    for topic in header.get("topics", ()):
        kind, _, rest = str(topic).partition(".")
        depth, _, symbol = rest.partition(".")
        if kind == "orderbook" and depth.isdigit() and symbol:
            symbols.setdefault(int(depth), []).append(symbol)
    if not symbols:
        return None
    book_depth, book_symbols = next(iter(symbols.items()))
    return BookKeeper(category, book_depth, book_symbols, math.inf, metrics, log, name,
                      follow_new=True)


def make_replay(config: ReplayConfig, context: Context) -> ReplaySource:
    return ReplaySource(config, context)


__all__ = ["RecoveryMirror", "ReplayClock", "ReplayConfig", "ReplaySource", "make_replay"]
