"""The ``files`` sink: events to ``<dir>/<channel>/<data_type>/date=YYYY-MM-DD/`` files.

Events are buffered per partition (channel, data type, UTC date of the event's own time) and
written out as one new file per partition when a partition holds ``max_rows`` events (cut at
exactly ``max_rows``), every ``flush_interval_s``, when all buffers together hold
``max_buffered_events``, and at shutdown. Each file is written under a hidden temporary name
(``.<name>.tmp``, which pyarrow, Spark and DuckDB skip), fsynced, then renamed: a reader sees
a whole file or none.

Writing happens in a worker thread, one flush at a time; the sink takes no new batch from its
inbox while a flush runs, so memory is bounded by ``max_buffered_events`` plus the core's
inbox (``queue_size`` / ``overflow``). A disk that hangs (a stuck network mount) cannot hold
the run: the pipeline's shutdown deadline abandons the thread (it goes on alone: a file it
finishes is renamed whole, one it fails is removed, the process may exit first and leave the
hidden temporary file), and the sink tells the core what it holds (``held_events``: the rows
of the blocked flush not yet written, and the buffered ones), which the run counts as lost.
The thread counts each file as it is done.

Formats: ``"jsonl"``: zstd-compressed JSON lines, each the wire envelope of one event
(``{"channel", "data_type", "data": [one item]}``), so a file's bytes depend only on the
events, not on how they were batched; ``"parquet"``: one typed table per file
(:mod:`streamer_files.schema`).
"""

from __future__ import annotations

import datetime as _dt
import os
import threading
from pathlib import Path
from typing import Any

import msgspec
import trio
import zstandard
from pyarrow import ArrowException

from streamer import Context, Event, Inbox
from streamer.clock import now, now_ms, trio_time_at
from streamer_files.config import FilesConfig

Partition = tuple[str, str, str]  # channel, data_type, "YYYY-MM-DD"

_encode = msgspec.json.Encoder().encode


def _event_ms(data_type: str, item: dict[str, Any]) -> int | None:
    for key in ("T", "timestamp", "ts"):
        v = item.get(key)
        if isinstance(v, int) and not isinstance(v, bool):
            return v
    return None


_DAY_MS = 86_400_000
_dates: dict[int, str] = {}


def _date(ms: int) -> str:
    """``YYYY-MM-DD`` (UTC) of epoch ``ms``; cached per day, it is asked once per event."""
    day = ms // _DAY_MS
    text = _dates.get(day)
    if text is None:
        if len(_dates) > 10_000:
            _dates.clear()
        text = _dates[day] = _dt.datetime.fromtimestamp(
            day * 86_400, tz=_dt.timezone.utc).strftime("%Y-%m-%d")
    return text


class FilesSink:
    def __init__(self, config: FilesConfig, context: Context) -> None:
        self.config = config
        self.context = context
        self.root = Path(config.dir)
        self.ext = ".jsonl.zst" if config.format == "jsonl" else ".parquet"
        #: partition -> wire items waiting to be written
        self.buffers: dict[Partition, list[dict[str, Any]]] = {}
        self.buffered = 0
        self.files_written: list[Path] = []
        self._seq = 0
        #: Readiness last reported to ``context.health`` (None: nothing written yet).
        self._reported_ready: bool | None = None
        #: Guards what the worker thread counts as it goes and what :meth:`held_events` reads.
        self._progress = threading.Lock()
        #: Rows handed to the running flush and not yet written or counted as dropped.
        self._writing = 0
        #: Set by :meth:`held_events`: the core has counted what is held as lost.
        self._counted_lost = False

    # -- buffering (trio thread) --------------------------------------------------------

    def add(self, events: list[Event]) -> list[tuple[Partition, list[dict[str, Any]]]]:
        """Buffer ``events``; return the chunks that reached ``max_rows`` (to write now)."""
        full: list[tuple[Partition, list[dict[str, Any]]]] = []
        max_rows = self.config.max_rows
        buffers = self.buffers
        today: str | None = None
        for e in events:
            item = e.to_wire()
            ms = _event_ms(e.data_type, item)
            if ms is None:
                if today is None:
                    today = _date(now_ms())
                day = today
            else:
                day = _date(ms)
            key = (e.channel, e.data_type, day)
            rows = buffers.get(key)
            if rows is None:
                rows = buffers[key] = []
            rows.append(item)
            if len(rows) >= max_rows:
                full.append((key, rows))
                buffers[key] = []
        self.buffered += len(events)
        for _, rows in full:
            self.buffered -= len(rows)
        return full

    def take_all(self) -> list[tuple[Partition, list[dict[str, Any]]]]:
        chunks = [(k, rows) for k, rows in self.buffers.items() if rows]
        self.buffers = {}
        self.buffered = 0
        return chunks

    def held_events(self) -> int:
        """The rows taken from the inbox and not yet written nor dropped: those of the flush
        in progress (possibly blocked on a hung disk) and the buffered ones. The core asks
        once, when it counts them as lost: a file finished afterwards is not counted as
        written (``streamer.HoldsEvents``)."""
        with self._progress:
            self._counted_lost = True
            return self._writing + self.buffered

    # -- writing (worker thread) --------------------------------------------------------

    def _path(self, key: Partition, rows: list[dict[str, Any]]) -> Path:
        channel, data_type, day = key
        folder = self.root / channel / data_type / f"date={day}"
        self._seq += 1
        first = _event_ms(data_type, rows[0]) or 0
        return folder / f"part-{first}-{self._seq:06d}{self.ext}"

    def _write_chunks(
        self, chunks: list[tuple[Partition, list[dict[str, Any]]]]
    ) -> tuple[list[tuple[Path, int]], list[tuple[Partition, int, Exception]]]:
        """Write each chunk as a file; a chunk that fails is reported, the others go on. Each
        is counted (written, or dropped) as soon as it is done, so that the flush a hung disk
        blocks holds only what it has not written (:meth:`held_events`)."""
        written: list[tuple[Path, int]] = []
        failed: list[tuple[Partition, int, Exception]] = []
        metrics = self.context.metrics
        for key, rows in chunks:
            try:
                path = self._write_one(key, rows)
            except (OSError, ValueError, TypeError, ArrowException) as exc:
                failed.append((key, len(rows), exc))
                with self._progress:
                    self._writing -= len(rows)
                    if not self._counted_lost:
                        metrics.inc("write_errors")
                        metrics.lost("dropped_events", len(rows))
                continue
            written.append((path, len(rows)))
            with self._progress:
                self._writing -= len(rows)
                if not self._counted_lost:
                    metrics.inc("files_written")
                    metrics.inc("written_events", len(rows))
        return written, failed

    def _write_one(self, key: Partition, rows: list[dict[str, Any]]) -> Path:
        path = self._path(key, rows)
        path.parent.mkdir(parents=True, exist_ok=True)
        while path.exists():  # a restart in the same millisecond: never overwrite
            path = self._path(key, rows)
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            if self.config.format == "jsonl":
                self._write_jsonl(tmp, key, rows)
            else:
                self._write_parquet(tmp, key, rows)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return path

    def _write_jsonl(self, tmp: Path, key: Partition, rows: list[dict[str, Any]]) -> None:
        channel, data_type, _ = key
        lines = b"".join(
            _encode({"channel": channel, "data_type": data_type, "data": [r]}) + b"\n"
            for r in rows)
        data = zstandard.ZstdCompressor(level=self.config.zstd_level).compress(lines)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    def _write_parquet(self, tmp: Path, key: Partition, rows: list[dict[str, Any]]) -> None:
        import pyarrow.parquet as pq

        from streamer_files.schema import to_table

        table = to_table(key[1], rows)
        with open(tmp, "wb") as f:
            pq.write_table(table, f, compression="zstd")
            f.flush()
            os.fsync(f.fileno())

    async def _flush(self, chunks: list[tuple[Partition, list[dict[str, Any]]]]) -> None:
        if not chunks:
            return
        with self._progress:
            self._writing += sum(len(rows) for _, rows in chunks)
        # Abandoned on cancel (the shutdown deadline): a hung disk must not hold the run past
        # it; what the thread has not written by then is counted through held_events.
        written, failed = await trio.to_thread.run_sync(
            self._write_chunks, chunks, abandon_on_cancel=True)
        self.files_written.extend(path for path, _ in written)
        for (channel, data_type, day), rows, exc in failed:
            self.context.logger.error(
                "files: cannot write %d %s %s events of %s under %s (%s: %s); they are dropped",
                rows, channel, data_type, day, self.root, type(exc).__name__, exc)
        if failed:
            _, _, exc = failed[-1]
            self._report_health(False, f"{len(failed)} of {len(chunks)} files not written, "
                                f"last: {type(exc).__name__}: {exc}")
        else:
            self._report_health(True)

    def _report_health(self, ready: bool, reason: str = "") -> None:
        """/readyz: not ready after a flush that lost a file (with the cause), ready again
        after one that wrote every file; a success is reported only when it changes the state
        (it comes once per flush)."""
        if not (ready and self._reported_ready):
            self._reported_ready = ready
            self.context.health.set("writes", ready, reason)

    # -- the sink -----------------------------------------------------------------------

    async def run(
        self, inbox: Inbox, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        interval = self.config.flush_interval_s
        task_status.started()
        try:
            next_flush = now() + interval
            while True:
                events: list[Event] = []
                with trio.move_on_at(trio_time_at(next_flush)):
                    events = await inbox.get()
                    if not events:
                        return  # shutdown: the finally below writes what is buffered
                if events:
                    await self._flush(self.add(events))
                    if self.buffered >= self.config.max_buffered_events:
                        await self._flush(self.take_all())
                if now() >= next_flush:
                    await self._flush(self.take_all())
                    next_flush = now() + interval
        finally:
            # Not shielded: the pipeline's deadline bounds the shutdown flush (what is left is
            # counted as lost). A write abandoned on a hung disk still runs: no second flush
            # beside it (it would hang too), the buffer is counted instead.
            with self._progress:
                abandoned = self._writing > 0
            if not abandoned:
                await self._flush(self.take_all())
