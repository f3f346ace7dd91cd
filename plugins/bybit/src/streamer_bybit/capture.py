"""Capture: every raw frame a Bybit source receives, on disk, for replay (``bybit.replay``).

``capture_dir = "..."`` on ``bybit.linear`` / ``bybit.spot`` turns it on. The reader task of
each connection hands every socket read (its list of text payloads, exactly as the decoder
gets them) to :meth:`CaptureTap.record`, which stamps it with the pipeline's wall time
(:func:`streamer.clock.now`, the time base the kline timers use, so a replay can put frames
and timers back in the same order) and appends it to a bounded in-memory queue. A writer
thread drains the queue, frames the records and writes them zstd-compressed. The socket task
never waits for the disk: when the queue holds more than ``capture_queue_mb`` the read is
dropped and counted (``capture_dropped_reads`` / ``capture_dropped_frames``), never blocked.

File format (one zstd stream per file; see docs/recording.md)::

    b"STRMCAP1"                                  magic, format version 1
    record*                                      until the end of the stream
    record  = kind:u8 time_us:i64 conn:u32 n:u32 body
    kind 0  header: body = n bytes of JSON (category, source, decoder settings)
    kind 1  frames of n socket reads (n = 1 .. 4096): n x time_us:i64, n x conn:u32,
            n x frames:u32 (payloads of each read), m x length:u32 (m = their sum), then
            the m payloads back to back; the record's own time_us is the first read's
    kind 2  a connection (socket session) opened: body = n bytes of its UTF-8 name
    kind 3  capture stopped (its time ends the recording); n = 0

Integers are little-endian. ``conn`` numbers socket sessions from 1 within one capture; each
file repeats the header and the open connections, so every file replays on its own. Files
are written as ``<name>.part`` and renamed when complete (rotation by ``capture_file_mb`` or
``capture_rotate_s``, or shutdown): a reader never mistakes a file being written for a whole
one.

Why the ``zstandard`` library: the standard library has no zstd before Python 3.14, and zstd
at level 1 compresses trade messages about 19x at ~0.36 us per 250-byte message (level 3:
0.53 us, no smaller), where gzip or lzma would cost the writer thread several times more CPU
for a worse ratio. Compression is most of the capture's cost (bench/bench_capture.py).
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import struct
import sys
import threading
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Final

import attrs
import msgspec
import trio
import zstandard

from streamer import clock
from streamer.logs import RateLimitedLog
from streamer.metrics import Metrics

MAGIC: Final = b"STRMCAP1"
SUFFIX: Final = ".bybitcap.zst"
PART: Final = ".part"
RECORD: Final = struct.Struct("<BqII")
LENGTH: Final = struct.Struct("<I")
HEADER, FRAMES, OPEN, END = 0, 1, 2, 3
#: Reads per FRAMES record at most.
READS_PER_RECORD: Final = 4096
_U32: Final = next(t for t in "IL" if array(t).itemsize == 4)

#: What the queue holds: (kind, time_us, conn, body, bytes accounted). For ``FRAMES`` the
#: body is one socket read already packed on the trio thread: (frame count, their lengths
#: as u32s, the frames joined); that frees the payload objects at once, where they were
#: allocated, and leaves the writer thread one contiguous buffer per read to compress.
#: For the other kinds it is the record's body as a tuple of bytes.
QueuedRead = tuple[int, int, int, Any, int]

#: Per queued read, on top of its bytes: the tuples, the bytes objects and the ints.
QUEUE_OVERHEAD_BYTES: Final = 300
#: How often the writer pushes a zstd block out (a crash loses at most this much).
FLUSH_INTERVAL_S: Final = 1.0
#: After a write error (disk full, directory gone), the writer discards reads and tries a new
#: file this long after.
RETRY_AFTER_S: Final = 5.0
#: How long shutdown waits for the writer to finish the current file.
CLOSE_TIMEOUT_S: Final = 10.0


def _positive(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be positive, got {value}")


def _queue_mb(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0 < value <= 4096:
        raise ValueError(f"{attribute.name} must be in (0, 4096], got {value}")


def _level(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not 1 <= value <= 19:
        raise ValueError(f"{attribute.name} must be between 1 and 19, got {value}")


@attrs.define
class CaptureOptions:
    """Capture settings shared by the Bybit sources (see docs/recording.md). Validated by
    field validators, so the sources' own ``__attrs_post_init__`` need not call up."""

    #: Write every raw frame received to zstd files in this folder (replay: bybit.replay).
    capture_dir: str | None = None
    #: Start a new capture file past this many MB (compressed).
    capture_file_mb: float = attrs.field(default=256.0, validator=_positive)
    #: Start a new capture file after this many seconds.
    capture_rotate_s: float = attrs.field(default=3600.0, validator=_positive)
    #: Reads waiting for the disk, in MB at most; beyond this new reads are dropped, counted.
    capture_queue_mb: float = attrs.field(default=64.0, validator=_queue_mb)
    #: zstd level (1 fastest .. 19 smallest).
    capture_level: int = attrs.field(default=1, validator=_level)


def now_us() -> int:
    """The pipeline's wall time in epoch microseconds."""
    return int(clock.now() * 1_000_000)


def record_parts(kind: int, time_us: int, conn: int, payloads: Sequence[bytes]) -> list[bytes]:
    """The pieces of one control record (header, connection opened, end)."""
    body = b"".join(payloads)
    return [RECORD.pack(kind, time_us, conn, len(body)), body]


def _le(typecode: str, values: list[int]) -> bytes:
    a = array(typecode, values)
    if sys.byteorder != "little":  # pragma: no cover - the format is little-endian
        a.byteswap()
    return a.tobytes()


def pack_read(payloads: Sequence[bytes]) -> tuple[int, bytes, bytes]:
    """One socket read as (frame count, u32 lengths, frames joined): three C-level calls."""
    return len(payloads), _le(_U32, list(map(len, payloads))), b"".join(payloads)


def frames_parts(reads: Sequence[QueuedRead]) -> list[bytes]:
    """One ``FRAMES`` record holding ``reads`` (packed by :func:`pack_read`), built with a
    few C-level passes over the batch: the writer thread's cost must stay small next to the
    decode's (bench/bench_capture.py)."""
    return [
        RECORD.pack(FRAMES, reads[0][1], 0, len(reads)),
        _le("q", [r[1] for r in reads]),
        _le(_U32, [r[2] for r in reads]),
        _le(_U32, [r[3][0] for r in reads]),
        *[r[3][1] for r in reads],
        *[r[3][2] for r in reads],
    ]


def encode_record(kind: int, time_us: int, conn: int, payloads: Sequence[bytes]) -> bytes:
    """One record (a ``FRAMES`` record of this one read)."""
    if kind == FRAMES:
        return b"".join(frames_parts([(kind, time_us, conn, pack_read(payloads), 0)]))
    return b"".join(record_parts(kind, time_us, conn, payloads))


class CaptureWriter:
    """The bounded queue and the writer thread of one source's capture."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        source: str,
        header: dict[str, Any],
        *,
        metrics: Metrics,
        logger: logging.Logger,
        file_bytes: int = 256 << 20,
        rotate_s: float = 3600.0,
        queue_bytes: int = 64 << 20,
        level: int = 1,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = Path(directory)
        self.source = source
        self.header = msgspec.json.encode(header)
        self.metrics = metrics
        self.logger = logger
        self.log = RateLimitedLog(logger)
        self.file_bytes = file_bytes
        self.rotate_s = rotate_s
        self.queue_bytes = queue_bytes
        self.level = level
        #: The writer thread's clock (rotation, flushes, retries): real time, not trio's.
        self.monotonic = monotonic
        self._queue: deque[QueuedRead] = deque()
        # Two counters, each written by one thread only, so no lock is needed.
        self._in_bytes = 0  # trio thread
        self._out_bytes = 0  # writer thread
        self._connections: dict[int, bytes] = {}  # open sessions, repeated in each file
        self._next_conn = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._file_index = 0
        self._started_us = now_us() if header.get("started_us") is None else \
            int(header["started_us"])
        #: Written by the writer thread, reported by :meth:`report` on the trio thread.
        self.lost_reads = 0
        self.files_written: list[Path] = []
        self.error: str | None = None
        self._reported_lost = 0
        #: CPU seconds the writer thread used, once it has finished, and the socket reads it
        #: wrote (bench figures).
        self.thread_cpu_s = 0.0
        self.reads_written = 0
        self.frames_written = 0

    # -- trio side ------------------------------------------------------------------------

    def start(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError:
            pass  # the writer thread reports it when it opens the first file, and retries
        self._put(HEADER, now_us(), 0, (self.header,))
        self._thread = threading.Thread(target=self._run, name=f"capture-{self.source}",
                                        daemon=True)
        self._thread.start()

    def open_connection(self, name: str) -> int:
        """Number a new socket session and record its name."""
        self._next_conn += 1
        conn = self._next_conn
        self._put(OPEN, now_us(), conn, (name.encode(),))
        return conn

    def record(self, conn: int, payloads: Sequence[bytes], time_us: int) -> None:
        """Queue one socket read; drop it (counted) if the queue is full. Never blocks."""
        self._put(FRAMES, time_us, conn, payloads)

    def _put(self, kind: int, time_us: int, conn: int, payloads: Sequence[bytes]) -> None:
        size = QUEUE_OVERHEAD_BYTES + 4 * len(payloads) + sum(map(len, payloads))
        if kind != FRAMES:
            self._in_bytes += size
            self._queue.append((kind, time_us, conn, tuple(payloads), size))
            return
        if self._in_bytes - self._out_bytes + size > self.queue_bytes:
            self.metrics.inc("capture_dropped_reads")
            self.metrics.inc("capture_dropped_frames", len(payloads))
            self.log.warning("capture_dropped", "%s: capture queue full (%d MB): the disk is "
                             "too slow, dropping reads from the capture (the stream itself "
                             "is unaffected)", self.source, self.queue_bytes >> 20)
            return
        self._in_bytes += size
        self._queue.append((kind, time_us, conn, pack_read(payloads), size))

    def report(self) -> None:
        """Copy the writer thread's losses into the metrics (called on the trio thread)."""
        lost = self.lost_reads
        if lost > self._reported_lost:
            self.metrics.inc("capture_lost_reads", lost - self._reported_lost)
            self._reported_lost = lost

    def stop(self) -> None:
        """Record the end and ask the thread to finish the current file."""
        self._in_bytes += QUEUE_OVERHEAD_BYTES
        self._queue.append((END, now_us(), 0, (), QUEUE_OVERHEAD_BYTES))
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    # -- writer thread --------------------------------------------------------------------

    def _run(self) -> None:
        out: _CaptureFile | None = None
        retry_at = 0.0
        queue = self._queue
        popleft = queue.popleft
        while True:
            if not queue:
                if self._stop.is_set():
                    break
                if out is not None:
                    try:
                        out.idle()
                        if out.expired(self.rotate_s):
                            self._close(out)
                            out = None
                    except OSError as exc:
                        out, retry_at = self._failed(out, exc)
                self._stop.wait(0.02)
                continue
            # Take what is queued (up to a bound) and write it with one call.
            batch: list[QueuedRead] = []
            done = 0
            while queue and len(batch) < READS_PER_RECORD:
                item = popleft()
                kind, time_us, conn, payloads, size = item
                done += size
                if kind == FRAMES:
                    batch.append(item)
                    continue
                # A control record: write the reads before it, then it alone.
                out, retry_at = self._write_reads(out, batch, retry_at)
                batch = []
                if kind == HEADER:  # the capture starts: its first file too
                    try:
                        out = self._open(time_us)
                    except OSError as exc:
                        out, retry_at = self._failed(None, exc)
                    continue
                if kind == OPEN:
                    self._connections[conn] = b"".join(payloads)
                if out is None:
                    if self.monotonic() < retry_at:
                        continue
                    try:
                        out = self._open(time_us)
                    except OSError as exc:
                        out, retry_at = self._failed(None, exc)
                        continue
                out, retry_at = self._write(
                    out, record_parts(kind, time_us, conn, payloads), 0, retry_at,
                    close=kind == END)
            self._out_bytes += done
            out, retry_at = self._write_reads(out, batch, retry_at)
        if out is not None:
            self._write(out, [], 0, retry_at, close=True)
        self.thread_cpu_s = time.thread_time()

    def _write_reads(self, out: _CaptureFile | None, batch: list[QueuedRead],
                     retry_at: float) -> tuple[_CaptureFile | None, float]:
        if not batch:
            return out, retry_at
        if out is None:
            if self.monotonic() < retry_at:
                self.lost_reads += len(batch)
                return None, retry_at
            try:
                out = self._open(batch[0][1])
            except OSError as exc:
                self.lost_reads += len(batch)
                return self._failed(None, exc)
        self.reads_written += len(batch)
        self.frames_written += sum([r[3][0] for r in batch])
        return self._write(out, frames_parts(batch), len(batch), retry_at)

    def _write(self, out: _CaptureFile | None, parts: list[bytes], reads: int,
               retry_at: float, *, close: bool = False) -> tuple[_CaptureFile | None, float]:
        """Write ``parts`` (records holding ``reads`` socket reads) to ``out``; rotate or
        close it as due."""
        if out is None:
            self.lost_reads += reads
            return None, retry_at
        try:
            if parts:
                out.write(b"".join(parts))
            if close or out.full(self.file_bytes) or out.expired(self.rotate_s):
                self._close(out)
                return None, retry_at
        except OSError as exc:
            self.lost_reads += reads
            return self._failed(out, exc)
        return out, retry_at

    def _open(self, time_us: int) -> _CaptureFile:
        self._file_index += 1
        # Named by the capture's start and a counter, never by the file's own time: name
        # order is replay order even if the wall clock steps back.
        stamp = _dt.datetime.fromtimestamp(self._started_us / 1e6, tz=_dt.timezone.utc)
        name = f"{self.source}-{stamp:%Y%m%dT%H%M%S}-{self._file_index:06d}{SUFFIX}"
        f = _CaptureFile(self.directory / name, self.level, self.monotonic)
        f.write(MAGIC + encode_record(HEADER, time_us, 0, (self.header,)))
        for conn, conn_name in self._connections.items():
            f.write(encode_record(OPEN, time_us, conn, (conn_name,)))
        self.error = None
        return f

    def _close(self, f: _CaptureFile) -> None:
        f.close()
        self.files_written.append(f.path)

    def _failed(self, f: _CaptureFile | None, exc: OSError) -> tuple[None, float]:
        self.error = f"{type(exc).__name__}: {exc}"
        self.logger.error("%s: capture write failed (%s); reads are discarded from the capture "
                          "for %.0f s, then a new file is tried", self.source, self.error,
                          RETRY_AFTER_S)
        if f is not None:
            f.abandon()
        return None, self.monotonic() + RETRY_AFTER_S


class _CaptureFile:
    """One capture file being written (as ``.part``, renamed on close)."""

    def __init__(self, path: Path, level: int, monotonic: Callable[[], float]) -> None:
        self.monotonic = monotonic
        self.path = path
        self.part = path.with_name(path.name + PART)
        self.raw = open(self.part, "wb")  # closed in close() / abandon()
        self.zw = zstandard.ZstdCompressor(level=level).stream_writer(self.raw, closefd=False)
        self.opened = monotonic()
        self.flushed = self.opened

    def write(self, data: bytes) -> None:
        self.zw.write(data)

    def full(self, limit: int) -> bool:
        return self.raw.tell() >= limit

    def expired(self, rotate_s: float) -> bool:
        return self.monotonic() - self.opened >= rotate_s

    def idle(self) -> None:
        now = self.monotonic()
        if now - self.flushed >= FLUSH_INTERVAL_S:
            self.zw.flush(zstandard.FLUSH_BLOCK)
            self.raw.flush()
            self.flushed = now

    def close(self) -> None:
        self.zw.close()  # ends the zstd frame
        self.raw.flush()
        os.fsync(self.raw.fileno())
        self.raw.close()
        os.replace(self.part, self.path)

    def abandon(self) -> None:
        try:
            self.raw.close()
        except OSError:
            pass


class CaptureTap:
    """What one connection's reader calls for each socket read: ``tap.record(payloads)``.

    A new socket session (the connection's ``reconnects`` count moved on) gets a new
    connection number, so a replay starts it with a fresh decoder, as the live source did.
    """

    __slots__ = ("_conn", "_connection", "_offset", "_session", "_writer")

    def __init__(self, writer: CaptureWriter, connection: Any) -> None:
        self._writer = writer
        self._connection = connection
        self._session = -1
        self._conn = 0
        self._offset = 0.0

    def record(self, payloads: Sequence[bytes], received: float) -> None:
        """``received``: ``trio.current_time()`` when the read returned (the reader has it
        already; turned into wall time with the pipeline clock's offset, fixed per run)."""
        session = self._connection.reconnects
        if session != self._session:
            self._session = session
            self._offset = clock.now() - trio.current_time()
            self._conn = self._writer.open_connection(
                f"{self._connection.name} session {session + 1}")
        self._writer.record(self._conn, payloads, int((received + self._offset) * 1_000_000))


def capture_header(source: str, connections: Sequence[Any]) -> dict[str, Any]:
    """What a replay needs to decode like the live source did."""
    first = connections[0]
    return {
        "format": 1,
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
    task_status: trio.TaskStatus[CaptureWriter] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Tap ``connections`` and run the capture writer until cancelled; then finish the
    current file (bounded by ``CLOSE_TIMEOUT_S``)."""
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
    for connection in connections:
        connection.capture = CaptureTap(writer, connection)
    logger.info("%s: capturing raw frames to %s", source, options.capture_dir)
    try:
        task_status.started(writer)
        while True:
            await trio.sleep(5.0)
            writer.report()
    finally:
        for connection in connections:
            connection.capture = None
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
    "END",
    "FRAMES",
    "HEADER",
    "MAGIC",
    "OPEN",
    "SUFFIX",
    "CaptureOptions",
    "CaptureTap",
    "CaptureWriter",
    "capture_header",
    "encode_record",
    "run_capture",
]
