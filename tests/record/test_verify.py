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


# Counts below are those of the run as the market ended (live_run's metrics); per symbol
# the market has 1m candles 0-6 (0 partial, as every first candle, so never checked; 2, 5
# and 6 flat) and, at PHASE, 3m candles of minute 0 (partial), minutes 1-3 and 4-6.


def _pipe(emit: str, extra: str = "") -> str:
    return pipe(inputs='"klines", "bybit", "verify"',
                extra_transforms=VERIFY.format(emit=emit, extra=extra))


def test_zero_mismatches_on_the_fake(tmp_path):
    events, metrics, _ = _run(tmp_path, _pipe("all"))
    counts = metrics["verify"]
    # Per symbol 1m 1, 3, 4 and 3m 1-3, 4-6; all but 1m 3 through the history: the stream
    # confirms a candle on the next trade, for 3 1 s into minute 4, for 1 a minute late
    # (past reference_wait_s), for 4 never.
    assert counts["checked"] == 10 and counts["history_checked"] == 8, counts
    assert counts.get("mismatches", 0) == 0, counts
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
    events, metrics, _ = _run(tmp_path, toml, corrupt=True, tail_ms=1_000)
    counts = metrics["verify"]
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
    # per symbol the 3m candle of minutes 1-3, given up 90 s after its end (4-6's wait
    # outlasts the capture)
    assert counts["no_reference"] == 2


def test_a_late_trade_beyond_the_waiter_shows_as_a_volume_mismatch(tmp_path):
    """The fake counts a trade that arrives after our candle closed; we drop it."""
    _, metrics, _ = live_run(tmp_path, _pipe("none"), phase_3m=PHASE)
    counts = metrics["verify"]
    # A BTCUSDT trade 400 ms late after minutes 0, 1, 3 and 4: dropped from the 1m candle,
    # and from the 3m one too where the minute ends it (0 and 3): 6 late trades. Checked by
    # the end (1 s after minute 7): BTCUSDT's 1m 1, 3, 4 and 3m 1-3 each miss one's volume.
    assert metrics["klines"]["late_trades"] == 6
    assert counts["mismatch.BTCUSDT.1m"] == 3 and counts["mismatch.BTCUSDT.3m"] == 1, counts
    assert counts["mismatches"] == counts["mismatch_field.volume"] == 4, counts


# -- through the source's history only (no kline stream) ----------------------------------

def test_without_a_kline_stream_every_candle_is_checked_through_the_history(tmp_path):
    events, metrics, fake = _run(tmp_path, _pipe("all"), streams=("trades",))
    counts = metrics["verify"]
    checks = [e for e in events if isinstance(e, KlineCheck)]
    # per symbol, 1m: minutes 1, 3, 4 (0 is partial; 2, 5, 6 are flat); 3m: minutes 1-3, 4-6
    assert counts["checked"] == counts["history_checked"] == len(checks) == 10, counts
    assert counts.get("mismatches", 0) == 0 and all(c.ok for c in checks)
    assert counts.get("no_reference", 0) == 0
    # flat minutes 2, 5, 6: no trades, no candle at the source
    assert counts["matched_empty"] == 6
    made = fake.rest_requests[:metrics["fake"]["rest_requests_at_market_end"]]
    kline_calls = [q for path, q in made if path == "/v5/market/kline"]
    # one call per symbol and close time: the 3m candles ride on the 1m rows
    assert kline_calls and all(q["interval"] == "1" for q in kline_calls)
    assert len(kline_calls) < counts["checked"] + counts["matched_empty"]


def test_a_corrupted_trade_is_found_through_the_history(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="streamer.transform.verify")
    events, metrics, _ = _run(tmp_path, _pipe("mismatches"), corrupt=True,
                              streams=("trades",))
    counts = metrics["verify"]
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

    _, metrics, _ = _run(tmp_path, _pipe("all"), streams=("trades",), prepare=failing)
    counts = metrics["verify"]
    assert counts.get("checked", 0) == 0
    # per symbol 1m 1-6 and 3m 1-3, 4-6, each asked reference_wait_s (10 s) after its end
    assert counts["history_failed"] == counts["no_reference"] == 16, counts
    lines = [r.getMessage() for r in caplog.records if "history_failed" in r.getMessage()]
    assert 1 <= len(lines) < counts["history_failed"]  # rate-limited
    assert "503" in lines[0]


def test_a_history_slower_than_its_timeout_counts_history_timeout(tmp_path):
    def slow(fake):
        fake.rest_path_delay["/v5/market/kline"] = 60.0

    _, metrics, _ = _run(tmp_path, _pipe("all", "history_timeout_s = 2"),
                         streams=("trades",), prepare=slow)
    counts = metrics["verify"]
    assert counts.get("checked", 0) == 0
    # the 16 candles of the failing history above, each given up 2 s after it was asked
    assert counts["history_timeout"] == counts["no_reference"] == 16, counts


def test_an_interval_the_history_cannot_build_counts_history_unavailable(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="streamer.transform.verify")
    toml = _pipe("none").replace('intervals = ["1m", "3m"]', 'intervals = ["10s", "1m"]')
    _, metrics, _ = _run(tmp_path, toml, streams=("trades",))
    counts = metrics["verify"]
    # Bybit has no 10s candles and none of its intervals divides 10s: per symbol the 41
    # 10s candles ending from 20 s to 7 min into the market (the first is partial), each
    # given up reference_wait_s (10 s) after its end, by the end at 7 min 15 s
    assert counts["history_unavailable"] == counts["no_reference"] == 82, counts
    # the 1m ones: per symbol 1, 3, 4 checked, 2, 5, 6 empty on both sides
    assert counts["checked"] == 6 and counts["matched_empty"] == 6, counts
    assert counts.get("mismatches", 0) == 0
    lines = [r.getMessage() for r in caplog.records if "history_unavailable" in r.getMessage()]
    assert 1 <= len(lines) < counts["history_unavailable"]
    assert "10s" in lines[0]
