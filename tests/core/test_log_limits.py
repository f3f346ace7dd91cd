"""The log rate limiter holds with any number of message kinds: a bounded key table, least
recently used out, a key's held-back count kept while it is in the table."""

from __future__ import annotations

import logging

from streamer._logs import MAX_KEYS, RateLimitedLog, RateLimiter, RateLimitFilter


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_a_full_table_evicts_the_least_recently_used_key_only_once_its_window_is_over():
    clock = Clock()
    limiter = RateLimiter(2, 10.0, max_keys=3, clock=clock)
    assert [limiter.admit(k) for k in "abc"] == [0, 0, 0]
    assert [limiter.admit("a") for _ in range(4)] == [0, None, None, None]  # 3 held back
    # Full, every key inside its window: a fourth kind is held back too, not let through.
    assert [limiter.admit("d") for _ in range(3)] == [None, None, None]
    assert len(limiter) == 3 and limiter.take_untracked() == 3
    clock.t = 5.0
    assert limiter.admit("b") == 0  # least recently used first: c, a, b
    clock.t = 10.0
    # The windows opened at 0 are over: d pushes out c, the least recently used ...
    assert limiter.admit("d") == 0
    # ... and a, still in the table, reports its 3 held back ...
    assert limiter.admit("a") == 3
    # ... c comes back in place of b (whose window is over) ...
    assert limiter.admit("c") == 0
    # ... and b finds the table full of keys inside their window: held back, untracked.
    assert limiter.admit("b") is None
    assert len(limiter) == 3 and limiter.take_untracked() == 1


def test_a_key_in_the_table_keeps_its_held_back_count():
    clock = Clock()
    limiter = RateLimiter(1, 10.0, max_keys=2, clock=clock)
    assert [limiter.admit("a") for _ in range(5)] == [0, None, None, None, None]
    limiter.admit("b")
    clock.t = 10.0
    assert limiter.admit("a") == 4  # a stayed in (most recently used before b's turn)


def test_ten_thousand_and_more_kinds_cannot_unlimit_the_log():
    """12,000 kinds of message (a source each), ten of each within one window: at most
    MAX_KEYS * BURST lines pass; before, the table started over past MAX_KEYS and every
    line passed again. The first line after the window says how many others were held."""
    clock = Clock()
    limit = RateLimitFilter(burst=5, window=10.0, clock=clock)
    assert MAX_KEYS == limit.limiter.max_keys == 10_000

    def record(name: str, msg: str = "lost %d events") -> logging.LogRecord:
        return logging.LogRecord(name, logging.WARNING, __file__, 1, msg, (1,), None)

    passed = sum(limit.filter(record(f"streamer.source.s{k}"))
                 for _ in range(10) for k in range(12_000))
    assert passed == 10_000 * 5
    assert len(limit.limiter) == 10_000
    clock.t = 10.0
    first = record("streamer.source.s11999")
    assert limit.filter(first)
    # 2,000 untracked per round; rounds 2 to 5 noted 8,000 of them on the lines that passed.
    assert first.getMessage() == (
        "lost 1 events (12000 other messages suppressed while 10000 kinds of message were "
        "being limited)")
    # s0, least recently used, went out for s11999, with its count; s9999 kept its count.
    again = record("streamer.source.s9999")
    assert limit.filter(again)
    assert again.getMessage() == "lost 1 events (suppressed 5 similar messages)"


def test_the_hot_path_log_notes_what_the_full_table_held_back(caplog):
    clock = Clock()
    log = RateLimitedLog(logging.getLogger("streamer.test.limits"), 10.0, clock=clock)
    log.limiter.max_keys = 2
    with caplog.at_level(logging.INFO, logger="streamer.test.limits"):
        for key in ("a", "b", "c", "c"):
            log.info(key, "bad message from %s", key)
        clock.t = 10.0
        log.info("c", "bad message from %s", "c")
    assert [r.getMessage() for r in caplog.records] == [
        "bad message from a", "bad message from b",
        "bad message from c (2 other messages suppressed while 2 kinds of message were "
        "being limited)"]
