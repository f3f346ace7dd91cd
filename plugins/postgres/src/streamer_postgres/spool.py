"""The on-disk spool: batches of rows that did not fit the memory buffer while the database
was away, one file each, written back oldest first.

A file is ``<seq>.<rows>.rows`` (msgpack of the :data:`~streamer_postgres.rows.Rows`),
written to a temporary name and renamed, so a crash leaves whole files only. The sequence
orders them; what the writer still holds at shutdown goes in *before* the oldest file
(:meth:`Spool.prepend`), so the next run writes everything in the order it arrived.
``max_bytes`` bounds the folder: a batch that would pass it is refused (the caller counts
it lost). Files left by a previous run are picked up at start.

A run that ends without losing anything leaves :data:`~streamer_postgres.coverage.CLEAN_MARK`
beside its files (:meth:`Spool.mark_clean`); the next run reads and removes it at start
(:attr:`Spool.inherited_clean`): only then may the coverage steps in the files it inherited
be written (:mod:`streamer_postgres.coverage`).
"""

from __future__ import annotations

import os
from collections import deque

import msgspec

from streamer_postgres.coverage import CLEAN_MARK
from streamer_postgres.rows import Rows, count

_SUFFIX = ".rows"
#: Sequence of the first file of an empty spool: room below it for prepends.
_FIRST_SEQ = 10**15
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(dict[str, list[tuple[object, ...]]])


class SpoolFile:
    __slots__ = ("path", "rows", "seq", "size")

    def __init__(self, path: str, seq: int, rows: int, size: int) -> None:
        self.path = path
        self.seq = seq
        self.rows = rows
        self.size = size


class Spool:
    def __init__(self, folder: str, max_bytes: int) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        os.makedirs(folder, exist_ok=True)
        mark = os.path.join(folder, CLEAN_MARK)
        #: The run that left the files ended without a loss.
        self.inherited_clean = os.path.exists(mark)
        if self.inherited_clean:
            os.unlink(mark)  # a crash of this run must not leave it
        found: list[SpoolFile] = []
        for name in os.listdir(folder):
            path = os.path.join(folder, name)
            if name.endswith(".tmp"):
                os.unlink(path)  # a write cut off by a crash: its batch was never taken
                continue
            parts = name.split(".")
            if len(parts) == 3 and name.endswith(_SUFFIX) and parts[0].isdigit() \
                    and parts[1].isdigit():
                found.append(SpoolFile(path, int(parts[0]), int(parts[1]),
                                       os.path.getsize(path)))
        found.sort(key=lambda f: f.seq)
        self._files = deque(found)
        self._inherited = {f.path for f in found}
        self.bytes = sum(f.size for f in found)
        self.rows = sum(f.rows for f in found)

    def __len__(self) -> int:
        return len(self._files)

    def holds_inherited(self) -> bool:
        """Whether files of the previous run are still here."""
        return any(f.path in self._inherited for f in self._files)

    def mark_clean(self) -> None:
        """This run ends without a loss: the next may write these files' coverage steps."""
        with open(os.path.join(self.folder, CLEAN_MARK), "w"):
            pass

    def oldest(self) -> SpoolFile | None:
        return self._files[0] if self._files else None

    def append(self, rows: Rows) -> bool:
        """Add a batch after the newest; False (nothing written) if it does not fit."""
        seq = self._files[-1].seq + 1 if self._files else _FIRST_SEQ
        spooled = self._write(seq, rows)
        if spooled is None:
            return False
        self._files.append(spooled)
        return True

    def prepend(self, rows: Rows) -> bool:
        """Add a batch before the oldest (it arrived before any of them)."""
        seq = self._files[0].seq - 1 if self._files else _FIRST_SEQ
        spooled = self._write(seq, rows)
        if spooled is None:
            return False
        self._files.appendleft(spooled)
        return True

    def _write(self, seq: int, rows: Rows) -> SpoolFile | None:
        data = _encoder.encode(rows)
        if self.bytes + len(data) > self.max_bytes:
            return None
        n = count(rows)
        path = os.path.join(self.folder, f"{seq:020d}.{n}{_SUFFIX}")
        with open(path + ".tmp", "wb") as f:
            f.write(data)
        os.replace(path + ".tmp", path)
        self.bytes += len(data)
        self.rows += n
        return SpoolFile(path, seq, n, len(data))

    @staticmethod
    def read(spooled: SpoolFile) -> Rows:
        """The rows of a file (in the writer's worker thread, with the write)."""
        with open(spooled.path, "rb") as f:
            return _decoder.decode(f.read())

    def remove(self, spooled: SpoolFile) -> None:
        """Forget the oldest file once written (or found unreadable)."""
        assert self._files and self._files[0] is spooled
        self._files.popleft()
        self.bytes -= spooled.size
        self.rows -= spooled.rows
        try:
            os.unlink(spooled.path)
        except FileNotFoundError:
            pass
