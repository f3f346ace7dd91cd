"""WakeTimer: a timerfd under trio's system clock (real time, so bounds), trio.sleep under a
MockClock (exact)."""

from __future__ import annotations

import os
import sys

import pytest
import trio
import trio.testing

from streamer.net import WakeTimer

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="timerfd")


@linux_only
def test_under_the_system_clock_it_sleeps_on_a_timerfd() -> None:
    async def main() -> list[float]:
        slept = []
        with WakeTimer() as timer:
            assert timer.uses_timerfd
            for seconds in (0.02, 0.001, 0.0042):  # reused: re-armed each time
                start = trio.current_time()
                await timer.sleep(seconds)
                slept.append(trio.current_time() - start)
        return slept

    slept = trio.run(main)
    for seconds, took in zip((0.02, 0.001, 0.0042), slept, strict=True):
        assert seconds <= took < seconds + 0.5  # never early; late only by the machine's load


@linux_only
def test_a_timer_that_fired_unwatched_does_not_cut_the_next_sleep_short() -> None:
    """Re-arming resets the expiration count: the fd is never read, and an expiry nobody
    waited for (the sleep was cancelled) must not end the next sleep at once."""

    async def main() -> float:
        with WakeTimer() as timer:
            with trio.move_on_after(0.001):
                await timer.sleep(0.002)  # cancelled; the timer still expires 1 ms later
            await trio.sleep(0.01)  # ... here, with nobody waiting
            start = trio.current_time()
            await timer.sleep(0.05)
            return trio.current_time() - start

    assert trio.run(main) >= 0.05


@linux_only
def test_cancelling_a_sleep_ends_it_at_once() -> None:
    async def main() -> float:
        with WakeTimer() as timer:
            start = trio.current_time()
            with trio.move_on_after(0.01):
                await timer.sleep(60)
            return trio.current_time() - start

    assert trio.run(main) < 5  # not 60 s


@linux_only
def test_close_releases_the_descriptor() -> None:
    async def main() -> int:
        timer = WakeTimer()
        fd = timer._fd
        await timer.sleep(0.001)
        timer.close()
        timer.close()  # twice is harmless
        return fd

    fd = trio.run(main)
    with pytest.raises(OSError):
        os.fstat(fd)


async def test_under_a_mock_clock_it_is_trio_sleep(autojump_clock: trio.testing.MockClock) -> None:
    with WakeTimer() as timer:
        assert not timer.uses_timerfd  # trio time is not the kernel's here
        start = trio.current_time()
        await timer.sleep(0.005)
        assert trio.current_time() - start == pytest.approx(0.005, abs=1e-12)
        with trio.move_on_after(1):
            await timer.sleep(3600)
        assert trio.current_time() - start == pytest.approx(1.005, abs=1e-9)
