"""An even clock for ``run_market(pacing="even")``: a Linux timerfd that fires every
``1 / rate`` s, awaited with trio.

Trio's own timers go through ``epoll_wait``, whose timeout is whole milliseconds (rounded
up): a message due 0.2 ms from now (5,000 msg/s) would wait 1 ms and leave with four others.
A timerfd keeps its period in nanoseconds, and every expiration is counted, so a late
wake-up still makes every message that fell due (each its own write; see
``Connection._writer``).
"""

from __future__ import annotations

import ctypes
import os

import trio

_CLOCK_MONOTONIC = 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


_libc = ctypes.CDLL(None, use_errno=True)


class EvenTicker:
    """Ticks every ``period`` seconds from when it is made; :meth:`wait` returns how many
    ticks passed since the previous call (>= 1)."""

    def __init__(self, period: float) -> None:
        if period <= 0:
            raise ValueError("period must be > 0")
        fd = _libc.timerfd_create(_CLOCK_MONOTONIC, os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create")
        ns = max(1, round(period * 1e9))
        step = _Timespec(ns // 1_000_000_000, ns % 1_000_000_000)
        spec = _Itimerspec(step, step)
        if _libc.timerfd_settime(fd, 0, ctypes.byref(spec), None) != 0:
            err = ctypes.get_errno()
            os.close(fd)
            raise OSError(err, "timerfd_settime")
        self._fd = fd

    async def wait(self) -> int:
        while True:
            try:
                return int.from_bytes(os.read(self._fd, 8), "little")
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            trio.lowlevel.notify_closing(self._fd)
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> EvenTicker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
