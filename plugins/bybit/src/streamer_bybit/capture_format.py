"""The capture file format: building records (for :mod:`streamer_bybit.capture_writer`) and
reading them (for :mod:`streamer_bybit.replay`).

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
    kind 4  a stream gap the source reported (a lost connection, its recovery ended):
            body = n bytes of JSON {"symbols", "since_ms", "closed", "complete"}
    kind 5  one symbol's recovery settled: body = n bytes of JSON {"symbol", "trades": [...]
            recovered from REST (maybe none), "quiet": no live trade of it came since the
            resubscribe (live ones these cover are duplicates), "holding": its held live
            trades are emitted right after these, "more": more of its trades follow}
    kind 6  a session after a lost one holds the live trades of the symbols it recovers:
            body = n bytes of JSON {"connection", "symbols", "max_held"}

Kinds 4 to 6 appear only in captures of sources with ``recover_gaps`` (header ``format``
2); a replay feeds them to the pipeline at their recorded time. Integers are little-endian.
``conn`` numbers socket sessions from 1 within one capture; each file repeats the header and
the open connections, so every file replays on its own. Files are written as ``<name>.part``
and renamed when complete (rotation by ``capture_file_mb`` or ``capture_rotate_s``, or
shutdown): a reader never mistakes a file being written for a whole one.

Every length a file claims is checked against a bound before anything is buffered for
it, so a damaged file costs an error, not memory.
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Final

import msgspec
import zstandard

from streamer import StreamGap, Trade

MAGIC: Final = b"STRMCAP1"
SUFFIX: Final = ".bybitcap.zst"
PART: Final = ".part"
RECORD: Final = struct.Struct("<BqII")
HEADER, FRAMES, OPEN, END, GAP, RECOVERED, HOLDING = 0, 1, 2, 3, 4, 5, 6
#: Record kinds whose body is n bytes as written (all but FRAMES).
BODY_KINDS: Final = frozenset((HEADER, OPEN, END, GAP, RECOVERED, HOLDING))
#: Recovered trades per RECOVERED record at most (a record body stays under MAX_BODY_BYTES).
TRADES_PER_RECORD: Final = 2000
#: Reads per FRAMES record at most.
READS_PER_RECORD: Final = 4096
_U32: Final = next(t for t in "IL" if array(t).itemsize == 4)

#: What the queue holds: (kind, time_us, conn, body, bytes accounted). For ``FRAMES`` the
#: body is one socket read already packed on the trio thread: (frame count, their lengths
#: as u32s, the frames joined); that frees the payload objects at once, where they were
#: allocated, and leaves the writer thread one contiguous buffer per read to compress.
#: For the other kinds it is the record's body as a tuple of bytes.
QueuedRead = tuple[int, int, int, Any, int]

#: Decompressed bytes read at a time.
READ_CHUNK: Final = 1 << 20
#: Bounds on what a (damaged) file may claim, so a bad length cannot make the reader buffer
#: a whole file: frames of one record, bytes of one frame (the live source's own limit),
#: bytes of one header or connection name.
MAX_FRAMES_PER_RECORD: Final = 1 << 20
MAX_FRAME_BYTES: Final = 16 << 20
MAX_BODY_BYTES: Final = 1 << 20


class CaptureFormatError(Exception):
    """A file is not a capture, or is damaged past its last whole record."""


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


def capture_files(path: str | Path) -> list[Path]:
    """The capture files at ``path`` (one file, or a folder's, in name order = time order)."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.name.endswith(SUFFIX))
        if not files:
            parts = [f.name for f in p.iterdir() if f.name.endswith(SUFFIX + PART)]
            hint = f" (only unfinished {', '.join(parts)})" if parts else ""
            raise FileNotFoundError(f"no {SUFFIX} capture files in {p}{hint}")
        return files
    if not p.exists():
        raise FileNotFoundError(f"capture {p} does not exist")
    return [p]


Record = tuple[int, int, int, Any]  # kind, time_us, conn, body (bytes or list[bytes])


def read_records(f: BinaryIO, name: str = "capture") -> Iterator[Record]:
    """The records of one capture stream. A truncated tail (a crash, a ``.part``) ends the
    iteration with :class:`CaptureFormatError` after every whole record was yielded."""
    reader = zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True)
    buf = b""
    pos = 0
    eof = False

    def fill(need: int) -> bool:
        nonlocal buf, pos, eof
        while len(buf) - pos < need and not eof:
            try:
                chunk = reader.read(READ_CHUNK)
            except zstandard.ZstdError as exc:
                raise CaptureFormatError(f"{name}: damaged zstd data ({exc})") from None
            if not chunk:
                eof = True
                break
            buf = buf[pos:] + chunk
            pos = 0
        return len(buf) - pos >= need

    if not fill(len(MAGIC)) or buf[: len(MAGIC)] != MAGIC:
        raise CaptureFormatError(f"{name}: not a capture file (no {MAGIC!r} at the start)")
    pos = len(MAGIC)
    rec_size = RECORD.size
    unpack_rec = RECORD.unpack_from
    while True:
        if not fill(rec_size):
            if len(buf) - pos:
                raise CaptureFormatError(f"{name}: truncated record at the end")
            return
        kind, time_us, conn, n = unpack_rec(buf, pos)
        pos += rec_size
        if kind == FRAMES:
            if not 0 < n <= READS_PER_RECORD:
                raise CaptureFormatError(f"{name}: implausible record ({n} reads)")
            if not fill(16 * n):
                raise CaptureFormatError(f"{name}: truncated record at the end")
            times = struct.unpack_from(f"<{n}q", buf, pos)
            conns = struct.unpack_from(f"<{n}I", buf, pos + 8 * n)
            counts = struct.unpack_from(f"<{n}I", buf, pos + 12 * n)
            pos += 16 * n
            m = sum(counts)
            if m > MAX_FRAMES_PER_RECORD:
                raise CaptureFormatError(f"{name}: implausible record ({m} frames)")
            if not fill(4 * m):
                raise CaptureFormatError(f"{name}: truncated record at the end")
            lengths = struct.unpack_from(f"<{m}I", buf, pos)
            if m and max(lengths) > MAX_FRAME_BYTES:
                raise CaptureFormatError(f"{name}: implausible frame ({max(lengths)} bytes)")
            pos += 4 * m
            if not fill(sum(lengths)):
                raise CaptureFormatError(f"{name}: truncated record at the end")
            i = 0
            for t, c, count in zip(times, conns, counts, strict=True):
                frames = []
                for length in lengths[i : i + count]:
                    frames.append(buf[pos : pos + length])
                    pos += length
                i += count
                yield kind, t, c, frames
        elif kind in BODY_KINDS:
            if n > MAX_BODY_BYTES:
                raise CaptureFormatError(f"{name}: implausible record ({n} bytes)")
            if not fill(n):
                raise CaptureFormatError(f"{name}: truncated record at the end")
            body = buf[pos : pos + n]
            pos += n
            yield kind, time_us, conn, body
        else:
            raise CaptureFormatError(f"{name}: unknown record kind {kind}")


def read_header(path: Path) -> tuple[int, dict[str, Any]]:
    """The start time (epoch us) and the header of one capture file."""
    with open(path, "rb") as f:
        for kind, time_us, _, body in read_records(f, str(path)):
            if kind == HEADER:
                return time_us, msgspec.json.decode(body)
            break
    raise CaptureFormatError(f"{path}: no header record")




class _GapBody(msgspec.Struct, omit_defaults=True):
    symbols: list[str]
    since_ms: int
    closed: bool
    complete: bool
    data_type: str = "trades"  # left out for trades: older captures read the same
    ended: bool = False  # a delisting's end (left out otherwise)


class RecoveredBody(msgspec.Struct):
    """A RECOVERED record's body."""

    symbol: str
    trades: list[Trade]
    quiet: bool
    holding: bool
    more: bool


class HoldingBody(msgspec.Struct):
    """A HOLDING record's body."""

    connection: str
    symbols: list[str]
    max_held: int


def gap_body(gap: StreamGap) -> bytes:
    return msgspec.json.encode(_GapBody(list(gap.symbols), gap.since_ms, gap.closed,
                                        gap.complete, gap.data_type, gap.ended))


def read_gap(channel: str, body: bytes) -> StreamGap:
    try:
        g = msgspec.json.decode(body, type=_GapBody)
    except msgspec.MsgspecError as exc:
        raise CaptureFormatError(f"damaged gap record ({exc})") from None
    return StreamGap(channel, tuple(g.symbols), g.since_ms, g.closed, g.complete, g.data_type,
                     g.ended)


def recovered_bodies(symbol: str, trades: Sequence[Trade], *, quiet: bool,
                     holding: bool) -> list[bytes]:
    """One settled recovery in RECOVERED bodies of at most :data:`TRADES_PER_RECORD`
    trades each (one body if none)."""
    starts = range(0, max(1, len(trades)), TRADES_PER_RECORD)
    return [msgspec.json.encode(RecoveredBody(
        symbol, list(trades[i : i + TRADES_PER_RECORD]), quiet, holding,
        more=i + TRADES_PER_RECORD < len(trades))) for i in starts]


def read_recovered(body: bytes) -> RecoveredBody:
    try:
        return msgspec.json.decode(body, type=RecoveredBody)
    except msgspec.MsgspecError as exc:
        raise CaptureFormatError(f"damaged recovered-trades record ({exc})") from None


def holding_body(connection: str, symbols: Sequence[str], max_held: int) -> bytes:
    return msgspec.json.encode(HoldingBody(connection, list(symbols), max_held))


def read_holding(body: bytes) -> HoldingBody:
    try:
        return msgspec.json.decode(body, type=HoldingBody)
    except msgspec.MsgspecError as exc:
        raise CaptureFormatError(f"damaged holding record ({exc})") from None
