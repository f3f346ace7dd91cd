"""klines.verify against the fake Bybit, whose kline stream and REST klines are both built
from its own trades (a trade sent with ``send_raw`` is in neither)."""

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
{extra}
"""

#: Every check is done 15 s after the last candle closed (the 3m one: 10 s after its end).
TAIL_MS = 15_000
#: The market starts two minutes into a 3m candle: the first 3m candle (partial, as every
#: first candle) holds minute 0 only, the next one minutes 1-3 (the corrupted trade's).
PHASE = 2


def _run(tmp_path, toml: str, **kw):
    """A live run without the beyond-the-waiter trade, checks all done before the end."""
    kw = {"late": False, "tail_ms": TAIL_MS, "phase_3m": PHASE} | kw
    return live_run(tmp_path, toml, **kw)


def _pipe(emit: str, extra: str = "") -> str:
    return pipe(inputs='"klines", "bybit", "verify"',
                extra_transforms=VERIFY.format(emit=emit, extra=extra))


def test_zero_mismatches_on_the_fake(tmp_path):
    events, pipeline, _ = _run(tmp_path, _pipe("all"))
    counts = pipeline.metrics()["verify"]
    assert counts["checked"] >= 8 and counts.get("mismatches", 0) == 0, counts
    checks = [e for e in events if isinstance(e, KlineCheck)]
    assert len(checks) == counts["checked"] and all(c.ok for c in checks)
    assert {c.symbol for c in checks} == {"BTCUSDT", "ETHUSDT"}
    # the kline stream carries 1m only: the 3m candles were checked through the history
    assert {c.interval for c in checks} == {60_000, 180_000}
    assert counts.get("no_reference", 0) == 0


def test_a_corrupted_trade_is_found_with_both_values(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="streamer.transform.verify")
    # The fake confirms a candle on the next trade, a minute later after the flat minute:
    # wait for the stream's confirm, so the replay (which has no history) finds it too.
    toml = _pipe("mismatches", "reference_wait_s = 90")
    events, pipeline, _ = _run(tmp_path, toml, corrupt=True, tail_ms=1_000)
    counts = pipeline.metrics()["verify"]
    assert counts["mismatches"] == 2, counts
    assert counts["mismatch.BTCUSDT.1m"] == 1  # against the kline stream
    assert counts["mismatch.BTCUSDT.3m"] == 1  # against the history
    assert counts["mismatch_field.high"] == 2 and counts["mismatch_field.volume"] == 2
    assert counts["mismatch_field.turnover"] == 2  # the klines carry turnover by default
    assert counts.get("mismatch_field.low", 0) == 0
    one_minute = [e for e in events if isinstance(e, KlineCheck) and e.interval == 60_000]
    (check,) = one_minute
    assert not check.ok and check.mismatched == "high,volume,turnover"
    assert check.to_wire()["high"] == 99999.0 and check.to_wire()["ref_high"] < 99999.0
    assert "kline mismatch linear BTCUSDT 1m" in caplog.text
    assert "high ours 99999.0 reference" in caplog.text
    # the replay of that capture finds the same mismatch on the stream; it has no history
    _, replayed = replay_run(tmp_path, toml)
    counts = replayed.metrics()["verify"]
    assert counts["mismatch.BTCUSDT.1m"] == 1 and counts.get("mismatch.BTCUSDT.3m", 0) == 0
    assert counts["no_reference"] >= 1


def test_a_late_trade_beyond_the_waiter_shows_as_a_volume_mismatch(tmp_path):
    """The fake counts a trade that arrives after our candle closed; we drop it."""
    _, pipeline, _ = live_run(tmp_path, _pipe("none"))
    counts = pipeline.metrics()["verify"]
    assert counts["mismatches"] >= 1 and counts["mismatch_field.volume"] >= 1
    assert pipeline.metrics()["klines"]["late_trades"] >= 1


# -- through the source's history only (no kline stream) ----------------------------------

def test_without_a_kline_stream_every_candle_is_checked_through_the_history(tmp_path):
    events, pipeline, fake = _run(tmp_path, _pipe("all"), streams=("trades",))
    counts = pipeline.metrics()["verify"]
    checks = [e for e in events if isinstance(e, KlineCheck)]
    # per symbol, 1m: minutes 1, 3, 4 (0 is partial; 2, 5, 6 are flat); 3m: minutes 1-3, 4-6
    assert counts["checked"] == counts["history_checked"] == len(checks) == 10, counts
    assert counts.get("mismatches", 0) == 0 and all(c.ok for c in checks)
    assert counts.get("no_reference", 0) == 0
    # flat minutes: no trades, no candle at the source (more may close while shutting down:
    # the virtual clock jumps while the capture's writer thread finishes)
    assert counts["matched_empty"] >= 6
    kline_calls = [q for path, q in fake.rest_requests if path == "/v5/market/kline"]
    # one call per symbol and close time: the 3m candles ride on the 1m rows
    assert kline_calls and all(q["interval"] == "1" for q in kline_calls)
    assert len(kline_calls) < counts["checked"] + counts["matched_empty"]


def test_a_corrupted_trade_is_found_through_the_history(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="streamer.transform.verify")
    events, pipeline, _ = _run(tmp_path, _pipe("mismatches"), corrupt=True,
                               streams=("trades",))
    counts = pipeline.metrics()["verify"]
    assert counts["mismatches"] == 2, counts
    assert counts["mismatch.BTCUSDT.1m"] == 1 and counts["mismatch.BTCUSDT.3m"] == 1
    checks = [e for e in events if isinstance(e, KlineCheck)]
    assert {(c.interval, c.mismatched) for c in checks} == {
        (60_000, "high,volume,turnover"), (180_000, "high,volume,turnover")}
    assert all(c.to_wire()["high"] == 99999.0 and c.to_wire()["ref_high"] < 99999.0
               for c in checks)
    assert "high ours 99999.0 reference" in caplog.text


def test_a_failing_history_counts_no_reference_with_its_cause(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="streamer.transform.verify")

    def failing(fake):
        fake.rest_failing.add("/v5/market/kline")

    _, pipeline, _ = _run(tmp_path, _pipe("all"), streams=("trades",), prepare=failing)
    counts = pipeline.metrics()["verify"]
    assert counts.get("checked", 0) == 0
    assert counts["history_failed"] == counts["no_reference"] >= 10, counts
    lines = [r.getMessage() for r in caplog.records if "history_failed" in r.getMessage()]
    assert 1 <= len(lines) < counts["history_failed"]  # rate-limited
    assert "503" in lines[0]


def test_a_history_slower_than_its_timeout_counts_history_timeout(tmp_path):
    def slow(fake):
        fake.rest_path_delay["/v5/market/kline"] = 60.0

    _, pipeline, _ = _run(tmp_path, _pipe("all", "history_timeout_s = 2"),
                          streams=("trades",), prepare=slow)
    counts = pipeline.metrics()["verify"]
    assert counts.get("checked", 0) == 0
    assert counts["history_timeout"] == counts["no_reference"] >= 10, counts


def test_an_interval_the_history_cannot_build_counts_history_unavailable(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="streamer.transform.verify")
    toml = _pipe("none").replace('intervals = ["1m", "3m"]', 'intervals = ["10s", "1m"]')
    _, pipeline, _ = _run(tmp_path, toml, streams=("trades",))
    counts = pipeline.metrics()["verify"]
    # Bybit has no 10s candles and none of its intervals divides 10s
    assert counts["history_unavailable"] == counts["no_reference"] >= 30, counts
    assert counts["checked"] >= 6 and counts.get("mismatches", 0) == 0  # the 1m ones
    lines = [r.getMessage() for r in caplog.records if "history_unavailable" in r.getMessage()]
    assert 1 <= len(lines) < counts["history_unavailable"]
    assert "10s" in lines[0]
