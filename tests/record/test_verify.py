"""klines.verify against the fake Bybit, whose kline stream is built from its own trades."""

from __future__ import annotations

import logging

from streamer_aggregate.verify import KlineCheck

from .helpers import live_run, pipe, replay_run

VERIFY = """
[[transforms]]
name = "verify"
type = "klines.verify"
inputs = ["klines", "bybit"]
emit = "{emit}"
"""


def _pipe(emit: str) -> str:
    return pipe(inputs='"klines", "bybit", "verify"', extra_transforms=VERIFY.format(emit=emit))


def test_zero_mismatches_on_the_fake(tmp_path):
    events, pipeline, _ = live_run(tmp_path, _pipe("all"), late=False)
    counts = pipeline.metrics()["verify"]
    assert counts["checked"] >= 4 and counts.get("mismatches", 0) == 0, counts
    checks = [e for e in events if isinstance(e, KlineCheck)]
    assert len(checks) == counts["checked"] and all(c.ok for c in checks)
    assert {c.symbol for c in checks} == {"BTCUSDT", "ETHUSDT"}


def test_a_corrupted_trade_is_found_with_both_values(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="streamer.transform.verify")
    events, pipeline, _ = live_run(tmp_path, _pipe("mismatches"), corrupt=True, late=False)
    counts = pipeline.metrics()["verify"]
    assert counts["mismatches"] == 1, counts
    assert counts["mismatch.BTCUSDT.1m"] == 1
    assert counts["mismatch_field.high"] == 1 and counts["mismatch_field.volume"] == 1
    assert counts.get("mismatch_field.low", 0) == 0
    (check,) = [e for e in events if isinstance(e, KlineCheck)]
    assert not check.ok and check.mismatched == "high,volume"
    assert check.to_wire()["high"] == 99999.0 and check.to_wire()["ref_high"] < 99999.0
    assert "kline mismatch linear BTCUSDT 1m" in caplog.text
    assert "high ours 99999.0 reference" in caplog.text
    # the replay of that capture finds the same mismatch
    _, replayed = replay_run(tmp_path, _pipe("mismatches"))
    assert replayed.metrics()["verify"]["mismatch.BTCUSDT.1m"] == 1


def test_a_late_trade_beyond_the_waiter_shows_as_a_volume_mismatch(tmp_path):
    """The fake counts a trade that arrives after our candle closed; we drop it."""
    _, pipeline, _ = live_run(tmp_path, _pipe("none"))
    counts = pipeline.metrics()["verify"]
    assert counts["mismatches"] >= 1 and counts["mismatch_field.volume"] >= 1
    assert pipeline.metrics()["klines"]["late_trades"] >= 1
