"""SIGTERM while a sink's write is blocked for good: a real ``streamer run`` subprocess with
the scripted ``test.tickers`` source and a sink whose output nobody takes.

- The ``files`` sink writing onto a hung disk: a FIFO that nobody opens for reading, made
  where the sink's next temporary file goes (its name is predictable: the partition, the
  first event's time, the file's number), so its ``open`` blocks in the worker thread. The
  thread is abandoned at the shutdown deadline (no hard stop), and the ``final`` line counts
  the rows the sink held (those of the blocked write and those buffered behind it) in
  ``lost_at_shutdown``: written + lost == emitted, exactly.
- The ``console`` sink writing to a stdout pipe that nobody reads: its blocked write is
  abandoned at the shutdown deadline and what it held is counted.

Either way exit 3 within ``shutdown_timeout`` + 1 s of the signal (a real-time bound on
purpose: the hard stop, ``HARD_STOP_GRACE`` later, cannot meet it; docs/faults.md).
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import time
from pathlib import Path

from faults.procs import wait_for_log
from faults.scripted_run import (
    emit_the_rest,
    final_counts,
    sigterm_and_wait,
    source_toml,
    streamer_run,
)

SHUTDOWN_TIMEOUT = 1.0
#: The ``ts`` of the scripted source's first ticker (the next ones add 1 ms each).
FIRST_TS = 1_700_000_000_000
MAX_ROWS = 1_000

FILES = f"""
[streamer]
shutdown_timeout = {SHUTDOWN_TIMEOUT}

[[sinks]]
name = "files"
type = "files"
inputs = ["src"]
dir = "{{dir}}"
max_rows = {MAX_ROWS}
flush_interval_s = 3600
"""


def partition(root: Path) -> Path:
    """Where the files sink puts the scripted tickers (all of one UTC day)."""
    day = dt.datetime.fromtimestamp(FIRST_TS / 1000, tz=dt.timezone.utc).strftime("%Y-%m-%d")
    return root / "linear" / "ticker" / f"date={day}"


def part_name(first_ticker: int, number: int) -> str:
    """The name of the sink's ``number``-th file, whose first row is ticker ``first_ticker``."""
    return f"part-{FIRST_TS + first_ticker}-{number:06d}.jsonl.zst"


def wait_for_file(path: Path, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 30  # a hang, not a speed check
    while not path.exists():
        assert proc.poll() is None, log_path.read_text(errors="replace")[-3000:]
        assert time.monotonic() < deadline, f"{path} not written within 30 s"
        time.sleep(0.05)


def hang_the_disk_at(path: Path) -> None:
    """A FIFO nobody reads where the sink will open its temporary file: ``open`` blocks."""
    os.mkfifo(path.with_name(f".{path.name}.tmp"))


def assert_counted_at_the_deadline(rc: int, elapsed: float, log: str, sink: str,
                                   written: int, lost: int) -> None:
    print(f"exit {rc} {elapsed:.2f} s after SIGTERM")
    assert rc == 3, log[-3000:]
    # Cut off at its deadline (the blocked write abandoned), not by the hard stop.
    assert f"sinks did not finish flushing within {SHUTDOWN_TIMEOUT:.1f}s; cancelled" in log
    assert "shutdown took longer" not in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    counts = final_counts(log, sink)
    assert counts.get("written_events", 0) == written, counts
    assert counts.get("lost_at_shutdown", 0) == lost, counts
    assert f"events lost: {lost} in all; {sink} lost_at_shutdown={lost}\n" in log, log[-3000:]
    assert elapsed < SHUTDOWN_TIMEOUT + 1.0, elapsed


def test_files_sink_blocked_in_its_shutdown_flush_counts_the_rows_it_held(
        tmp_path: Path) -> None:
    root = tmp_path / "out"
    first, then = MAX_ROWS, 500  # a full file, then 500 rows buffered until the shutdown
    with streamer_run(tmp_path, FILES.format(dir=root) + source_toml(first, then)) as (
            proc, log_path):
        wait_for_file(partition(root) / part_name(0, 1), proc, log_path)
        hang_the_disk_at(partition(root) / part_name(first, 2))
        emit_the_rest(proc)
        wait_for_log(log_path, f"emitted {first + then} tickers", proc, timeout=30)
        rc, elapsed = sigterm_and_wait(proc, log_path)
    assert_counted_at_the_deadline(rc, elapsed, log_path.read_text(errors="replace"),
                                   "files", written=first, lost=then)
    assert sorted(p.name for p in partition(root).glob("part-*")) == [part_name(0, 1)]


def test_files_sink_blocked_mid_run_counts_its_flush_and_its_buffer(tmp_path: Path) -> None:
    root = tmp_path / "out"
    # 1,500: a full file written, 500 rows buffered; 1,000 more: the partition fills up at the
    # 500th, and that file's write blocks with the other 500 buffered behind it.
    first, then = MAX_ROWS + 500, MAX_ROWS
    with streamer_run(tmp_path, FILES.format(dir=root) + source_toml(first, then)) as (
            proc, log_path):
        wait_for_file(partition(root) / part_name(0, 1), proc, log_path)
        hang_the_disk_at(partition(root) / part_name(MAX_ROWS, 2))
        emit_the_rest(proc)
        wait_for_log(log_path, f"emitted {first + then} tickers", proc, timeout=30)
        rc, elapsed = sigterm_and_wait(proc, log_path)
    # The batch the sink took last is 1,000 tickers; it held 1,500.
    assert_counted_at_the_deadline(rc, elapsed, log_path.read_text(errors="replace"),
                                   "files", written=MAX_ROWS, lost=first + then - MAX_ROWS)
    assert sorted(p.name for p in partition(root).glob("part-*")) == [part_name(0, 1)]


CONSOLE = f"""
[streamer]
shutdown_timeout = {SHUTDOWN_TIMEOUT}

[[sinks]]
name = "console"
type = "console"
inputs = ["src"]
stall_timeout = 0.5
"""


def test_console_blocked_on_an_unread_stdout_counts_what_it_held(tmp_path: Path) -> None:
    # 15,000 tickers, about 1.4 MB of JSON lines (far more than the pipe's 64 KiB), then 100
    # more queued behind the blocked write: the stall report says it is blocked.
    first, then = 15_000, 100
    emitted = first + then
    with streamer_run(tmp_path, CONSOLE + source_toml(first, then),
                      stdout=subprocess.PIPE) as (proc, log_path):  # never read
        wait_for_log(log_path, f"emitted {first} tickers", proc, timeout=30)
        emit_the_rest(proc)
        wait_for_log(log_path, f"emitted {emitted} tickers", proc, timeout=30)
        wait_for_log(log_path, "sink 'console' stalled", proc, timeout=30)
        rc, elapsed = sigterm_and_wait(proc, log_path)
    log = log_path.read_text(errors="replace")
    print(f"exit {rc} {elapsed:.2f} s after SIGTERM")
    assert rc == 3, log[-3000:]
    # Cut off at its deadline (the blocked write abandoned), not by the hard stop.
    assert f"sinks did not finish flushing within {SHUTDOWN_TIMEOUT:.1f}s; cancelled" in log
    assert "shutdown took longer" not in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    counts = final_counts(log, "console")
    lost = counts.get("lost_at_shutdown", 0) + counts.get("inbox_dropped_events", 0)
    assert lost > 0, counts
    assert counts.get("written_events", 0) + lost == emitted, counts
    assert f"events lost: {lost} in all; console " in log, log[-3000:]
    assert elapsed < SHUTDOWN_TIMEOUT + 1.0, elapsed
