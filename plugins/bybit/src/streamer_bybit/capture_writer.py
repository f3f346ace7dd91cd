"""The capture writer: a bounded queue of socket reads and the thread that writes them.

The trio side (:meth:`CaptureWriter.record`, called from a connection's reader through a
:class:`~streamer_bybit.capture.CaptureTap`) packs a read with a few C-level calls and
appends it to a deque; when the queued bytes would pass ``queue_bytes`` the read is dropped
and counted instead, so the socket never waits for the disk. The writer thread takes what is
queued, writes it as records (:mod:`streamer_bybit.capture_format`) through a zstd stream,
rotates files by size and age, flushes a zstd block every second, and on a write error
discards reads (counted) for ``RETRY_AFTER_S`` before trying a new file. Each file is written
as ``<name>.part`` and renamed when complete.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import msgspec
import zstandard

from streamer import Metrics, RateLimitedLog, clock
from streamer_bybit.capture_format import (
    END,
    FRAMES,
    HEADER,
    MAGIC,
    OPEN,
    PART,
    READS_PER_RECORD,
    SUFFIX,
    QueuedRead,
    encode_record,
    frames_parts,
    pack_read,
    record_parts,
)

#: Per queued read, on top of its bytes: the tuples, the bytes objects and the ints.
QUEUE_OVERHEAD_BYTES: Final = 300
#: How often the writer pushes a zstd block out (a crash loses at most this much).
FLUSH_INTERVAL_S: Final = 1.0
#: After a write error (disk full, directory gone), the writer discards reads and tries a new
#: file this long after.
RETRY_AFTER_S: Final = 5.0


def now_us() -> int:
    """The pipeline's wall time in epoch microseconds."""
    return int(clock.now() * 1_000_000)


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

    def record_event(self, kind: int, conn: int, body: bytes) -> None:
        """Queue a GAP or RECOVERED record stamped now; within the same bound as the reads
        (dropped, counted ``capture_dropped_records``, if the queue is full). Never blocks."""
        size = QUEUE_OVERHEAD_BYTES + len(body)
        if self._in_bytes - self._out_bytes + size > self.queue_bytes:
            self.metrics.inc("capture_dropped_records")
            self.log.warning("capture_dropped_record", "%s: capture queue full (%d MB): a "
                             "recovery record is not captured, a replay will differ",
                             self.source, self.queue_bytes >> 20)
            return
        self._put(kind, now_us(), conn, (body,))

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



__all__ = ["CaptureWriter", "now_us"]
