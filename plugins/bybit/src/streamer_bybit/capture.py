"""Capture: every raw frame a Bybit source receives, on disk, for replay (``bybit.replay``).

``capture_dir = "..."`` on ``bybit.linear`` / ``bybit.spot`` turns it on. The reader task of
each connection hands every socket read (its list of text payloads, exactly as the decoder
gets them) to :meth:`CaptureTap.record`, which stamps it with the pipeline's wall time
(:func:`streamer.clock.now`, the time base the kline timers use, so a replay can put frames
and timers back in the same order) and appends it to a bounded in-memory queue. Its outlet
hands over what gap recovery does besides the socket reads: the symbols whose live trades
are held after a reconnect, the trades recovered from REST and the stream gaps reported
(:meth:`CaptureTap.holding`, :meth:`CaptureTap.recovered`, :meth:`CaptureTap.gap`). A writer
thread drains the queue, frames the records and writes them zstd-compressed. The socket task
never waits for the disk: when the queue holds more than ``capture_queue_mb`` the read is
dropped and counted (``capture_dropped_reads`` / ``capture_dropped_frames``), never blocked.

The file format is in :mod:`streamer_bybit.capture_format`.

Why the ``zstandard`` library: the standard library has no zstd before Python 3.14, and zstd
at level 1 compresses trade messages about 19x at ~0.36 us per 250-byte message (level 3:
0.53 us, no smaller), where gzip or lzma would cost the writer thread several times more CPU
for a worse ratio. Compression is most of the capture's cost (bench/bench_capture.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any, Final

import trio

from streamer import Metrics, StreamGap, Trade, clock
from streamer_bybit.capture_format import (
    GAP,
    HOLDING,
    RECOVERED,
    gap_body,
    holding_body,
    recovered_bodies,
)
from streamer_bybit.capture_writer import CaptureWriter, now_us
from streamer_bybit.config import CaptureOptions

#: How long shutdown waits for the writer to finish the current file.
CLOSE_TIMEOUT_S: Final = 10.0


class CaptureTap:
    """One connection's way into the capture, given to it when it is made; the reader calls
    ``tap.record(payloads, received)`` for each socket read, its outlet the rest.

    It writes only while a capture runs (:func:`run_capture` opens it on that run's writer,
    and closes it). A new socket session (:meth:`session`) gets a new connection number in
    the capture, so a replay starts it with a fresh decoder, as the live source did.
    """

    __slots__ = ("_conn", "_offset", "_open", "_session", "_wanted", "name", "writer")

    def __init__(self, name: str) -> None:
        self.name = name
        #: The writer of the current capture run (kept after it, for its figures).
        self.writer: CaptureWriter | None = None
        self._open: CaptureWriter | None = None  # the writer while the capture runs
        self._wanted = 0  # the connection's session number
        self._session = -1  # the session number ``_conn`` was opened for
        self._conn = 0
        self._offset = 0.0

    def open(self, writer: CaptureWriter) -> None:
        self.writer = self._open = writer
        self._session = -1
        self._conn = 0

    def close(self) -> None:
        self._open = None

    def session(self, number: int) -> None:
        """The connection started socket session ``number`` (its reconnects so far)."""
        self._wanted = number

    def record(self, payloads: Sequence[bytes], received: float) -> None:
        """``received``: ``trio.current_time()`` when the read returned (the reader has it
        already; turned into wall time with the pipeline clock's offset, fixed per run)."""
        writer = self._open
        if writer is not None:
            conn = self._session_conn(writer)
            writer.record(conn, payloads, int((received + self._offset) * 1_000_000))

    def _session_conn(self, writer: CaptureWriter) -> int:
        session = self._wanted
        if session != self._session:
            self._session = session
            self._offset = clock.now() - trio.current_time()
            self._conn = writer.open_connection(f"{self.name} session {session + 1}")
        return self._conn

    # What gap recovery emits besides the socket reads, so that a replay emits it too.

    def gap(self, gap: StreamGap) -> None:
        """The source reported a stream gap (opened or closed)."""
        if self._open is not None:
            self._open.record_event(GAP, self._conn, gap_body(gap))

    def holding(self, symbols: Sequence[str], max_held: int) -> None:
        """A session after a lost one holds the live trades of ``symbols`` until each is
        recovered (at most ``max_held`` in all, then it emits them)."""
        writer = self._open
        if writer is not None:
            conn = self._session_conn(writer)
            writer.record_event(HOLDING, conn, holding_body(self.name, symbols, max_held))

    def recovered(self, symbol: str, trades: Sequence[Trade], *, quiet: bool,
                  holding: bool) -> None:
        """The recovery of ``symbol`` settled: ``trades`` from REST (maybe none) are emitted
        now, followed by its held live trades if it is still ``holding``; ``quiet``: no live
        trade of it came since the resubscribe (live ones these cover will be dropped)."""
        writer = self._open
        if writer is not None:
            conn = self._session_conn(writer)
            for body in recovered_bodies(symbol, trades, quiet=quiet, holding=holding):
                writer.record_event(RECOVERED, conn, body)


class CaptureRun:
    """One capture run, as the source sees it: the taps written into its writer (those of
    connections opened while it runs, for listings, join with :meth:`add`), and the gaps of
    the source's own (a delisting's end: :meth:`gap`)."""

    def __init__(self, writer: CaptureWriter, taps: Iterable[CaptureTap]) -> None:
        self.writer = writer
        self.taps: list[CaptureTap] = []
        self.running = True
        for tap in taps:
            self.add(tap)

    def add(self, tap: CaptureTap) -> None:
        if self.running:
            tap.open(self.writer)
            self.taps.append(tap)

    def gap(self, gap: StreamGap) -> None:
        """A gap the source reports itself (not one connection's: connection number 0)."""
        if self.running:
            self.writer.record_event(GAP, 0, gap_body(gap))

    def close(self) -> None:
        self.running = False
        for tap in self.taps:
            tap.close()


def capture_header(source: str, connections: Sequence[Any]) -> dict[str, Any]:
    """What a replay needs to decode like the live source did."""
    first = connections[0]
    return {
        "format": 2,
        "source": source,
        "category": first.settings.channel,
        "url": first.settings.url,
        "emit_tickers": first.book.emit_tickers,
        "ticker_price_field": first.book.price_field,
        "price_from_trades": first.decoder.price_from_trades,
        "topics": [t for c in connections for t in c.topics],
        "started_us": now_us(),
    }


async def run_capture(
    options: CaptureOptions,
    source: str,
    connections: Iterable[Any],
    metrics: Metrics,
    logger: logging.Logger,
    *,
    task_status: trio.TaskStatus[CaptureRun] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the capture writer into which the taps ``connections`` were made with
    (``capture``) write, until cancelled; then finish the current file (bounded by
    ``CLOSE_TIMEOUT_S``). ``started()`` with the :class:`CaptureRun`."""
    assert options.capture_dir is not None
    connections = list(connections)
    writer = CaptureWriter(
        options.capture_dir, source, capture_header(source, connections),
        metrics=metrics, logger=logger,
        file_bytes=int(options.capture_file_mb * (1 << 20)),
        rotate_s=options.capture_rotate_s,
        queue_bytes=int(options.capture_queue_mb * (1 << 20)),
        level=options.capture_level,
    )
    writer.start()
    run = CaptureRun(writer, (c.capture for c in connections if c.capture is not None))
    logger.info("%s: capturing raw frames to %s", source, options.capture_dir)
    try:
        task_status.started(run)
        while True:
            await trio.sleep(5.0)
            writer.report()
    finally:
        run.close()
        writer.stop()
        # Bounded by the thread join's own real-time timeout rather than a trio deadline,
        # so a virtual clock (tests, replays) cannot cut the last file short.
        with trio.CancelScope(shield=True):
            done = await trio.to_thread.run_sync(writer.join, CLOSE_TIMEOUT_S)
        if not done:
            logger.error("%s: the capture writer did not finish within %.0f s; the last "
                         "file stays as .part", source, CLOSE_TIMEOUT_S)
        writer.report()


__all__ = [
    "CaptureOptions",
    "CaptureRun",
    "CaptureTap",
    "CaptureWriter",
    "capture_header",
    "run_capture",
]
