"""The ``files`` sink's options (imported when the plugin registers: attrs and the core's
validators only; the sink's pyarrow and zstandard come with the sink)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import attrs

from streamer.validators import at_least, at_least_field, between, unwritable_dir


def _dir(_: Any, __: attrs.Attribute[str], value: str) -> None:
    if not value:
        raise ValueError(f"dir: expected the folder the files go to, got {value!r}")


@attrs.define
class FilesConfig:
    """Every option is checked by its field validator (the one across fields included), so
    the config loader reports all bad ones at once, each with its path."""

    #: Root folder of the partitioned files.
    dir: str = attrs.field(default="", validator=_dir)
    #: "jsonl": zstd JSON lines (one wire envelope per event); "parquet": typed columns.
    format: Literal["jsonl", "parquet"] = "jsonl"
    #: A partition's buffer is written as a file once it holds this many events.
    max_rows: int = attrs.field(default=100_000, validator=at_least(1))
    #: Every partition with buffered events is written at least this often (seconds).
    flush_interval_s: float = attrs.field(default=60.0, validator=between(0.1, 86_400))
    #: All buffers together hold at most this many events; reaching it writes them all.
    max_buffered_events: int = attrs.field(default=500_000, validator=at_least_field("max_rows"))
    #: zstd level of the JSON lines (1 fastest .. 19 smallest).
    zstd_level: int = attrs.field(default=3, validator=between(1, 19))

    def validate(self, environ: Mapping[str, str]) -> list[str]:
        """``dir`` must take files now (``check`` and ``run``): a run that could write none
        would drop every event."""
        problem = unwritable_dir(self.dir) if self.dir else None
        return [f"dir: {problem}"] if problem else []
