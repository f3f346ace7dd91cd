"""klines.verify on its own: matching order, tolerance, bounded waiting."""

from __future__ import annotations

import logging

import pytest
import trio

from streamer import clock
from streamer._api import Context
from streamer._events import Kline
from streamer._metrics import Metrics
from streamer_aggregate.config import VerifyConfig
from streamer_aggregate.verify import KlineCheck, KlineVerify

M = 60_000


def _verify(**kw) -> KlineVerify:
    ctx = Context(name="verify", type="klines.verify",
                  logger=logging.getLogger("streamer.transform.verify"), metrics=Metrics())
    return KlineVerify(VerifyConfig(**kw), ctx)


def built(start: int, close: float = 1.5, volume: float = 3.0, symbol: str = "BTCUSDT"):
    return Kline("linear", symbol, M, start, 1.0, 2.0, 0.5, close, volume, 7)


def ref(start: int, close: float = 1.5, volume: float = 3.0, symbol: str = "BTCUSDT"):
    return Kline("linear", symbol, M, start, 1.0, 2.0, 0.5, close, volume, None)


def test_either_order_matches_and_tolerance_is_relative():
    v = _verify(tolerance=1e-6, emit="all")
    out = v.process([ref(0)]) + v.process([built(0, close=1.5 * (1 + 1e-7))])
    out += v.process([built(M, close=1.6)]) + v.process([ref(M)])
    assert [(c.timestamp, c.ok, c.mismatched) for c in out if isinstance(c, KlineCheck)] == [
        (0, True, ""), (M, False, "close")]
    assert v.metrics["mismatch.BTCUSDT.1m"] == 1 and v.metrics["matched"] == 1


def test_volume_and_turnover_are_compared_exactly_whatever_the_tolerance():
    v = _verify(tolerance=1e-3, emit="all")
    # What Bybit sends ("97.048", "242629.7048") against the float sums of the same trades.
    exact = [Kline("linear", "BTCUSDT", M, s, 1.0, 2.0, 0.5, 1.5, 97.048, c, True, 242629.7048)
             for s, c in ((0, 4), (M, None))]
    noisy = [Kline("linear", "BTCUSDT", M, s, 1.0, 2.0, 0.5, 1.5, v, 4, True, t)
             for s, v, t in ((M, 97.04799999999999, 242629.7048),
                             (2 * M, 97.048, 242629.70479999995))]
    ref_2 = Kline("linear", "BTCUSDT", M, 2 * M, 1.0, 2.0, 0.5, 1.5, 97.048, None, True,
                  242629.7048)
    out = v.process(exact[:1]) + v.process([ref(0, volume=97.048)])
    out += v.process(noisy[:1]) + v.process(exact[1:])
    out += v.process(noisy[1:]) + v.process([ref_2])
    assert [(c.timestamp, c.mismatched) for c in out if isinstance(c, KlineCheck)] == [
        (0, ""), (M, "volume"), (2 * M, "turnover")]


def test_open_and_partial_candles_are_not_kept():
    v = _verify()
    v.process([ref(0)])
    v.process([Kline("linear", "BTCUSDT", M, M, 1, 1, 1, 1, 1, 3, closed=False),
               Kline("linear", "BTCUSDT", M, M, 1, 1, 1, 1, 1, 3, partial=True),
               built(0, symbol="ETHUSDT")])
    assert v.pending_count == 2  # the reference of 0 and ETHUSDT's built candle


async def test_without_history_a_built_candle_waits_reference_wait_s_then_gives_up(
        autojump_clock):
    """No input source offers history: after the wait, an unreferenced series counts
    no_reference, a referenced one unmatched_built; a reference arriving later is late."""
    v = _verify(reference_wait_s=30)
    t0 = (clock.now_ms() // M + 1) * M
    out: list = []

    async def emit(events):
        out.extend(events)

    async with trio.open_nursery() as nursery:
        await nursery.start(v.run, emit)
        v.process([ref(t0 - M), built(t0 - M)])  # BTCUSDT 1m referenced, and matched
        v.process([built(t0), built(t0, symbol="ETHUSDT")])
        await trio.sleep_until(clock.trio_time_at((t0 + M + 29_000) / 1000))
        assert v.pending_count == 2 and v.metrics["no_reference"] == 0
        await trio.sleep(2)
        assert v.pending_count == 0
        assert v.metrics["no_reference"] == 1 and v.metrics["unmatched_built"] == 1
        v.process([ref(t0)])  # the stream's confirm, too late
        assert v.metrics["late_reference"] == 1 and v.pending_count == 0
        nursery.cancel_scope.cancel()
    assert out == []


def test_built_candles_are_bounded_in_all():
    v = _verify(max_pending=50)
    for i in range(100):
        v.process([built(i * M)])
    assert v.pending_count == 50 and v.metrics["pending_full"] == 50
    # matched ones free their place (and their deadline, on the next overflow)
    v2 = _verify(max_pending=50)
    for i in range(200):
        v2.process([built(i * M), ref(i * M)])
    assert v2.metrics["matched"] == 200 and v2.pending_count == 0
    assert len(v2._deadlines) <= 50 and v2.metrics["pending_full"] == 0


def test_waiting_is_bounded_per_series_and_in_all():
    v = _verify(max_pending=50)
    v.process([ref(0)])
    for i in range(1, 1000):  # references whose built candle never comes
        v.process([ref(i * M)])
        assert len(v.pending[("linear", "BTCUSDT", M)]) <= 3
    assert v.metrics["unmatched_reference"] == 1000 - 3
    for s in range(100):  # many series at once hit max_pending
        v.process([ref(0, symbol=f"S{s}")])
    assert v.pending_count == 50 and v.metrics["pending_full"] > 0


def test_a_repeated_confirm_counts_once():
    v = _verify(emit="all")
    out = v.process([ref(0), ref(0), built(0)])
    assert v.metrics["duplicates"] == 1 and len(out) == 1


@pytest.mark.parametrize("key, value", [("reference_wait_s", 0), ("reference_wait_s", 4000),
                                        ("history_timeout_s", 0), ("history_timeout_s", 301)])
def test_waits_are_bounded_in_the_config(key, value):
    with pytest.raises(ValueError, match=key):
        VerifyConfig(**{key: value})
