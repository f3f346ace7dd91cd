"""A timer one task sleeps on, woken through epoll as a socket read is: a Linux timerfd.

Why: a read-coalescing reader sleeps a few milliseconds after every small read, ~200 times
a second. ``trio.sleep`` is a cancel scope with a deadline; when it expires, trio cancels
the scope and throws ``Cancelled`` through the sleeping frames, which the scope then
catches: about 140 Python calls per wake-up, each on caches the other processes have
cooled during the sleep. Measured on the project's 2-core VMs, a 5 ms sleep in a loop cost
~260 us of CPU per wake-up with ``trio.sleep_until`` against ~130 us waiting on a timerfd
(``wait_readable``: the task is simply rescheduled, no exception), and ~50 us for a bare
``epoll.poll`` loop. A timerfd also keeps nanoseconds, where trio's timers go through
``epoll_wait``'s whole milliseconds (rounded up, so a 4.2 ms wait took 5).

Per wait: one ``timerfd_settime`` (which also resets the expiration count, so the fd is not
read) and trio's ``epoll_ctl`` of ``wait_readable``; the wake-up itself is the
``epoll_wait`` the task would make anyway.

Only under trio's system clock: under any other clock (``trio.testing.MockClock``, a
replay's clock) trio time is not the kernel's, and :meth:`WakeTimer.sleep` is
``trio.sleep``; elsewhere than Linux, too. Either way it is a checkpoint that a
cancellation ends at once.
"""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Final

import trio

try:  # trio's default clock; not public, hence the fallback to plain trio.sleep
    from trio._core._run import SystemClock as _SystemClock
except ImportError:  # pragma: no cover - another trio layout
    _SystemClock = None  # type: ignore[assignment,misc]

_CLOCK_MONOTONIC: Final = 1  # what trio's SystemClock reads (time.perf_counter) on Linux
_NS: Final = 1_000_000_000


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.timerfd_create  # noqa: B018 - present since glibc 2.8
    except (OSError, AttributeError):
        return None
    return libc


_LIBC: Final = _libc()


class WakeTimer:
    """One task's reusable one-shot timer (see the module doc). Close it when done."""

    def __init__(self) -> None:
        self._fd = -1
        self._spec = _Itimerspec()
        self._settime = None
        clock = trio.lowlevel.current_clock()
        if _LIBC is None or _SystemClock is None or type(clock) is not _SystemClock:
            return
        fd = _LIBC.timerfd_create(_CLOCK_MONOTONIC, os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            return  # out of descriptors or a sandbox without timerfd: trio.sleep then
        self._fd = fd
        self._settime = _LIBC.timerfd_settime
        self._spec_ref = ctypes.byref(self._spec)

    @property
    def uses_timerfd(self) -> bool:
        return self._fd >= 0

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` (> 0) of trio time; a checkpoint, cancelled at once."""
        fd = self._fd
        if fd < 0:
            await trio.sleep(seconds)
            return
        ns = int(seconds * _NS)
        value = self._spec.it_value
        value.tv_sec, value.tv_nsec = divmod(ns if ns > 0 else 1, _NS)  # 0 would disarm it
        if self._settime(fd, 0, self._spec_ref, None) != 0:  # type: ignore[misc]
            raise OSError(ctypes.get_errno(), "timerfd_settime")
        await trio.lowlevel.wait_readable(fd)

    def close(self) -> None:
        if self._fd >= 0:
            trio.lowlevel.notify_closing(self._fd)
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> WakeTimer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["WakeTimer"]
