"""``ReplayClock``: while the replay runs, time follows the recording (held at the point the
replay has reached, flowing ``speed`` times real time up to there); after ``finish()`` it
flows in real time with no ceiling, so the timers that follow a replay fire.

Real time passes here (the clock reads ``time.perf_counter``), so the flowing values are
checked against ``perf_counter`` readings taken around them, to within float rounding."""

from __future__ import annotations

import math
import time

from streamer_bybit.replay import ReplayClock

#: Float rounding of ``base + elapsed * speed`` (seconds).
ROUNDING = 1e-9
#: Real time to let pass between readings; any positive amount shows the point.
PAUSE = 0.02


def test_held_at_the_replay_then_real_time_after_finish() -> None:
    clock = ReplayClock(1_700_000_000.0, math.inf)
    clock.start_clock()
    clock.allow(5.0)
    assert clock.current_time() == 5.0
    time.sleep(PAUSE)
    assert clock.current_time() == 5.0  # "max": time jumps to the replay and stays there
    assert clock.deadline_to_sleep_time(6.0) == 3600.0  # waits for the replay, not for 6.0

    before = time.perf_counter()
    clock.finish()
    after = time.perf_counter()
    time.sleep(PAUSE)
    low = time.perf_counter() - after
    now = clock.current_time()
    high = time.perf_counter() - before
    assert low - ROUNDING <= now - 5.0 <= high + ROUNDING
    assert now - 5.0 >= PAUSE - ROUNDING
    # A deadline past the last record is a real-time wait away, and the replay cannot
    # take time back.
    assert 0.0 < clock.deadline_to_sleep_time(now + 1.0) <= 1.0
    clock.allow(2.0)
    assert clock.current_time() >= now


def test_at_speed_two_it_flows_twice_as_fast_up_to_the_replay_then_at_real_time() -> None:
    clock = ReplayClock(1_700_000_000.0, 2.0)
    clock.start_clock()
    before = time.perf_counter()
    clock.allow(1000.0)  # time flows from here
    after = time.perf_counter()
    time.sleep(PAUSE)
    low = time.perf_counter() - after
    now = clock.current_time()
    high = time.perf_counter() - before
    assert 2 * low - ROUNDING <= now <= 2 * high + ROUNDING

    clock = ReplayClock(1_700_000_000.0, 2.0)
    clock.start_clock()
    clock.allow(0.001)
    time.sleep(PAUSE)
    assert clock.current_time() == 0.001  # held at the replay's point
    before = time.perf_counter()
    clock.finish()
    after = time.perf_counter()
    time.sleep(PAUSE)
    low = time.perf_counter() - after
    now = clock.current_time()
    high = time.perf_counter() - before
    assert low - ROUNDING <= now - 0.001 <= high + ROUNDING  # 1x, not 2x
