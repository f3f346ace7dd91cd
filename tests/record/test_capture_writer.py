"""The capture writer on its own: bounded queue when the disk is slow, rotation, bad disk."""

from __future__ import annotations

import io
import logging
import random
import struct
import time

import pytest
import trio
import zstandard

from streamer._api import StreamGap
from streamer._events import Trade
from streamer._metrics import Metrics
from streamer_bybit.capture_format import (
    FRAMES,
    GAP,
    HOLDING,
    MAGIC,
    RECORD,
    RECOVERED,
    SUFFIX,
    TRADES_PER_RECORD,
    CaptureFormatError,
    capture_files,
    gap_body,
    holding_body,
    read_gap,
    read_holding,
    read_records,
    read_recovered,
    recovered_bodies,
)
from streamer_bybit.capture_writer import CaptureWriter

PAYLOAD = b'{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1,"data":[]}' * 4


def _writer(tmp_path, **kw) -> CaptureWriter:
    return CaptureWriter(tmp_path, "src", {"category": "linear"}, metrics=Metrics(),
                         logger=logging.getLogger("test.capture"), **kw)


async def test_a_stalled_disk_drops_reads_counted_and_memory_stays_bounded(tmp_path):
    writer = _writer(tmp_path, queue_bytes=1 << 20)
    # The writer thread is not started: nothing leaves the queue, as with a stuck disk.
    conn = writer.open_connection("c")
    for _ in range(20_000):  # ~6 MB offered to a 1 MB queue
        writer.record(conn, [PAYLOAD], 1)
    # A read costs its 264 payload bytes + 4 + QUEUE_OVERHEAD_BYTES (300) = 568 bytes, the
    # OPEN record 300 + 4 + 1 = 305: (1 MiB - 305) // 568 = 1845 reads fit, 18,155 are dropped.
    assert len(PAYLOAD) == 264
    assert writer._in_bytes - writer._out_bytes == 305 + 1845 * 568  # <= 1 MiB
    assert writer.metrics["capture_dropped_reads"] == 20_000 - 1845
    assert writer.metrics["capture_dropped_frames"] == 20_000 - 1845
    assert len(writer._queue) == 1 + 1845  # the OPEN record and the reads that fit


async def wait_real(predicate, seconds: float = 30.0) -> None:
    """Wait for what the writer thread does, bounded in real time (a loaded machine may take
    its time); the sleeping is done in a thread so that the writer gets the GIL."""
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"not done after {seconds} s of real time"
        await trio.to_thread.run_sync(time.sleep, 0.005)


async def test_rotation_by_size_gives_files_that_each_replay(tmp_path):
    # Incompressible reads of 200 KiB, each queued once the writer took the one before: every
    # read is a batch of its own, so what the files hold does not depend on thread timing. A
    # frozen writer clock means no periodic flush and no rotation by age.
    rng = random.Random(11)
    payloads = [rng.randbytes(200 << 10) for _ in range(5)]
    writer = _writer(tmp_path, file_bytes=300 << 10, level=1, monotonic=lambda: 0.0)
    writer.start()
    conn = writer.open_connection("c")
    for i, payload in enumerate(payloads):
        writer.record(conn, [payload], i)
        await wait_real(lambda n=i + 1: writer.reads_written == n)
    writer.stop()
    assert await trio.to_thread.run_sync(writer.join, 10)
    files = capture_files(tmp_path)
    # zstd emits its output in 128 KiB blocks: after one read a file holds one block (under
    # 300 KiB), after two it holds three (over it) and is closed; the fifth read shares the
    # last file with the end record.
    assert len(files) == 3
    seen = []
    for f in files:
        with open(f, "rb") as fh:
            records = list(read_records(fh))
        assert records[0][0] == 0  # each file opens with the header ...
        assert records[1][0] == 2  # ... and the connections open at that point
        seen.append([body[0] for kind, _, _, body in records if kind == FRAMES])
    assert seen == [payloads[0:2], payloads[2:4], payloads[4:5]]


async def test_a_truncated_file_yields_its_whole_records_then_says_so(tmp_path):
    writer = _writer(tmp_path)
    writer.start()
    conn = writer.open_connection("c")
    for i in range(2000):
        writer.record(conn, [PAYLOAD + str(i).encode()], i)
        if i % 200 == 199:
            while writer._queue:  # let the writer take it: one record per chunk of reads
                await trio.sleep(0.01)
    writer.stop()
    assert await trio.to_thread.run_sync(writer.join, 10)
    (f,) = capture_files(tmp_path)
    data = f.read_bytes()
    cut = tmp_path / ("cut" + SUFFIX)
    cut.write_bytes(data[: len(data) // 2])
    got = 0
    with open(cut, "rb") as fh, pytest.raises(CaptureFormatError):
        for kind, _, _, _ in read_records(fh, "cut"):
            got += kind == FRAMES
    assert 0 < got < 2000


async def test_an_unusable_folder_loses_reads_counted_never_raises(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    writer = _writer(tmp_path / "file" / "capture")
    writer.start()
    conn = writer.open_connection("c")
    for _ in range(100):
        writer.record(conn, [PAYLOAD], 1)
    writer.stop()
    assert await trio.to_thread.run_sync(writer.join, 10)
    writer.report()
    assert writer.metrics["capture_lost_reads"] == 100
    assert writer.error is not None and "NotADirectoryError" in writer.error


def _capture(body: bytes) -> io.BytesIO:
    return io.BytesIO(zstandard.ZstdCompressor().compress(MAGIC + body))


@pytest.mark.parametrize("body", [
    RECORD.pack(FRAMES, 1, 1, 1) + struct.pack("<qII", 1, 1, 1) + struct.pack("<I", 1 << 30),
    RECORD.pack(FRAMES, 1, 1, 1) + struct.pack("<qII", 1, 1, 1 << 30),
    RECORD.pack(FRAMES, 1, 1, 1 << 30),
    RECORD.pack(0, 1, 0, 1 << 30),
    RECORD.pack(9, 1, 0, 0),
], ids=["frame-length", "frame-count", "read-count", "body-length", "kind"])
def test_a_damaged_length_is_refused_before_buffering(body):
    with pytest.raises(CaptureFormatError):
        list(read_records(_capture(body)))


def test_not_a_capture_is_refused():
    with pytest.raises(CaptureFormatError, match="not a capture"):
        list(read_records(io.BytesIO(zstandard.ZstdCompressor().compress(b"hello"))))


async def test_rotation_by_time_closes_the_file_when_its_time_is_up(tmp_path):
    now = [1000.0]  # the writer thread's clock, moved by the test
    writer = _writer(tmp_path, rotate_s=60.0, monotonic=lambda: now[0])
    writer.start()
    conn = writer.open_connection("c")
    writer.record(conn, [PAYLOAD], 1)
    with trio.fail_after(10):
        while writer.reads_written < 1:  # the thread has written the read
            await trio.sleep(0.01)
    # its clock stands still: the file stays open, still .part
    assert writer.files_written == []
    assert [p.name.endswith(".part") for p in tmp_path.iterdir()] == [True]
    now[0] += 61.0
    with trio.fail_after(10):
        while not writer.files_written:  # the idle writer notices within its 20 ms poll
            await trio.sleep(0.01)
    writer.record(conn, [PAYLOAD + b"2"], 2)
    writer.stop()
    assert await trio.to_thread.run_sync(writer.join, 10)
    files = capture_files(tmp_path)
    assert len(files) == 2
    with open(files[1], "rb") as fh:
        records = list(read_records(fh))
    assert [r[0] for r in records] == [0, 2, 1, 3]  # header, connection, the read, end


async def test_recovery_records_are_bounded_by_the_same_queue(tmp_path):
    writer = _writer(tmp_path, queue_bytes=1 << 20)  # not started: a stuck disk
    body = b"x" * 100_000
    for _ in range(30):  # 3 MB of recovered trades offered to a 1 MB queue
        writer.record_event(RECOVERED, 1, body)
    assert writer._in_bytes - writer._out_bytes <= 1 << 20
    dropped = writer.metrics["capture_dropped_records"]
    assert dropped >= 20 and len(writer._queue) + dropped == 30


async def test_gap_holding_and_recovered_records_round_trip(tmp_path):
    trades = [Trade("linear", "BTCUSDT", 1000 + i, "Buy", "1.5", "0.01", f"id{i}", "PlusTick",
                    False, False) for i in range(TRADES_PER_RECORD + 5)]
    gap = StreamGap("linear", ("BTCUSDT", "ETHUSDT"), 999, closed=True, complete=False)
    writer = _writer(tmp_path)
    writer.start()
    writer.record_event(GAP, 1, gap_body(gap))
    writer.record_event(HOLDING, 1, holding_body("linear#0", ["BTCUSDT", "ETHUSDT"], 20))
    for body in recovered_bodies("BTCUSDT", trades, quiet=True, holding=False):
        writer.record_event(RECOVERED, 1, body)
    (empty,) = recovered_bodies("ETHUSDT", [], quiet=False, holding=True)
    writer.record_event(RECOVERED, 1, empty)
    writer.stop()
    assert await trio.to_thread.run_sync(writer.join, 10)
    (f,) = capture_files(tmp_path)
    with open(f, "rb") as fh:
        records = [(kind, body) for kind, _, _, body in read_records(fh)
                   if kind in (GAP, RECOVERED, HOLDING)]
    assert read_gap("linear", records[0][1]) == gap
    holding = read_holding(records[1][1])
    assert (holding.connection, holding.symbols, holding.max_held) == (
        "linear#0", ["BTCUSDT", "ETHUSDT"], 20)
    chunks = [read_recovered(body) for _, body in records[2:]]
    assert [(c.symbol, c.quiet, c.holding, c.more, len(c.trades)) for c in chunks] == [
        ("BTCUSDT", True, False, True, TRADES_PER_RECORD), ("BTCUSDT", True, False, False, 5),
        ("ETHUSDT", False, True, False, 0)]
    assert [t for c in chunks for t in c.trades] == trades


def test_a_damaged_recovery_record_names_its_kind():
    with pytest.raises(CaptureFormatError, match="recovered-trades"):
        read_recovered(b'{"symbol": 1}')
    with pytest.raises(CaptureFormatError, match="gap record"):
        read_gap("linear", b"[]")
    with pytest.raises(CaptureFormatError, match="holding"):
        read_holding(b"{}")
