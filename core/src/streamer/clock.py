"""Wall-clock time as seen through trio's clock.

Waiter mode, flush intervals and the fake Bybit all need epoch milliseconds. Reading
``time.time()`` directly would make them untestable under ``trio.testing.MockClock``, so
wall time is derived from ``trio.current_time()`` plus an offset captured once per
``trio.run``: in production the two clocks advance together; under a MockClock with
``autojump_threshold=0`` a 24-hour sleep moves the wall clock by 24 hours, instantly.

A source may drive time itself (a replay of a capture): the only hook is that a trio clock
with a ``wall_offset`` attribute (epoch seconds at trio time 0) sets the offset instead of
``time.time()``. ``streamer run`` runs trio with the clock a source offers as its
``trio_clock`` attribute (:meth:`streamer._runtime.Pipeline.trio_clock`), so every timer in
the pipeline (kline closes, flush intervals) follows the recorded time.
"""

from __future__ import annotations

import time

import trio
import trio.lowlevel

_OFFSET: trio.lowlevel.RunVar[float] = trio.lowlevel.RunVar("streamer_wall_offset")


def _offset() -> float:
    try:
        return _OFFSET.get()
    except LookupError:
        offset = getattr(trio.lowlevel.current_clock(), "wall_offset", None)
        if offset is None:
            offset = time.time() - trio.current_time()
        _OFFSET.set(offset)
        return offset


def now() -> float:
    """Epoch seconds, advancing with trio's clock (virtual under MockClock)."""
    return _offset() + trio.current_time()


def now_ms() -> int:
    """Epoch milliseconds, advancing with trio's clock (virtual under MockClock)."""
    return int((_offset() + trio.current_time()) * 1000)


def trio_time_at(epoch_seconds: float) -> float:
    """The ``trio.current_time()`` value at which the wall clock reads ``epoch_seconds``.

    Use it with ``trio.sleep_until`` to wake exactly at an interval boundary.
    """
    return epoch_seconds - _offset()
