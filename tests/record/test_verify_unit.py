"""klines.verify on its own: matching order, tolerance, bounded waiting."""

from __future__ import annotations

import logging

from streamer._api import Context
from streamer._events import Kline
from streamer._metrics import Metrics
from streamer_aggregate.verify import KlineCheck, KlineVerify, VerifyConfig

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
    out = v.process([ref(0)]) + v.process([built(0, volume=3.0 * (1 + 1e-7))])
    out += v.process([built(M, close=1.6)]) + v.process([ref(M)])
    assert [(c.timestamp, c.ok, c.mismatched) for c in out if isinstance(c, KlineCheck)] == [
        (0, True, ""), (M, False, "close")]
    assert v.metrics["mismatch.BTCUSDT.1m"] == 1 and v.metrics["matched"] == 1


def test_open_and_partial_candles_and_unreferenced_series_are_not_kept():
    v = _verify()
    v.process([ref(0)])  # BTCUSDT 1m is referenced from now on
    v.process([Kline("linear", "BTCUSDT", M, M, 1, 1, 1, 1, 1, 3, closed=False),
               Kline("linear", "BTCUSDT", M, M, 1, 1, 1, 1, 1, 3, partial=True),
               built(0, symbol="ETHUSDT")])
    assert v.metrics["no_reference"] == 1
    assert v.pending_count == 1  # only the reference of 0


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
