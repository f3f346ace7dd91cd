"""``klines.verify``: check the klines we build from trades against the exchange's own.

Inputs: a ``klines.from_trades`` transform and the source whose kline stream (``streams``
with ``"klines"``) carries the exchange's confirmed candles. The two are told apart by what
they are, not where they come from (a transform's ``process`` is not told its input): a
kline built from trades always has a ``trade_count``; an exchange's kline stream has none
(Bybit does not send it). Only closed, non-partial candles are compared.

Each built candle is matched with the reference candle of the same channel, symbol,
interval and start, whichever arrives first; then open, high, low, close and volume (and
turnover when both have it) are compared with a relative ``tolerance``. A mismatch is
counted per symbol and interval (``mismatch.<symbol>.<interval>``) and per field
(``mismatch_field.<field>``), logged (rate-limited per symbol and interval) with both values,
and, with ``emit = "mismatches"`` or ``"all"``, sent downstream as a ``kline_check`` event.

Memory is bounded without a clock: a candle waiting for its partner is given up (counted
``unmatched_built`` / ``unmatched_reference``) once a candle two intervals newer of the same
series has been seen, so each series holds at most three; built candles of a series the
reference stream never carried are not kept at all (``no_reference``); and beyond
``max_pending`` waiting candles in all a new one is not kept (``pending_full``).

Checking against the exchange's REST history when its kline stream is not subscribed is not
part of this transform yet: the source-side "history" protocol it needs is not in the core.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import attrs
import msgspec
import trio

from streamer import Context, Emit, Event, Kline, RateLimitedLog
from streamer.intervals import interval_label
from streamer.validators import at_least

Series = tuple[str, str, int]  # channel, symbol, interval
FIELDS = ("open", "high", "low", "close", "volume")


class KlineCheck(msgspec.Struct, frozen=True, gc=False):
    """The outcome of one comparison (wire ``data_type`` ``kline_check``): our values, the
    reference's (``ref_*``) and the fields that differ beyond the tolerance."""

    channel: str
    symbol: str
    interval: int
    timestamp: int
    ok: bool
    mismatched: str  # comma-separated field names, "" when ok
    ours: tuple[float, ...]
    reference: tuple[float, ...]

    data_type = "kline_check"

    def to_wire(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "symbol": self.symbol,
            "interval": self.interval,
            "timestamp": self.timestamp,
            "ok": self.ok,
            "mismatched": self.mismatched,
        }
        for name, value in zip(FIELDS, self.ours, strict=True):
            d[name] = value
        for name, value in zip(FIELDS, self.reference, strict=True):
            d[f"ref_{name}"] = value
        return d


def _tolerance(_: Any, __: attrs.Attribute[float], value: float) -> None:
    if not 0 <= value < 1:
        raise ValueError(f"tolerance: expected at least 0 and less than 1, got {value!r}")


@attrs.define
class VerifyConfig:
    #: Largest relative difference still equal: |a - b| <= tolerance * max(|a|, |b|).
    tolerance: float = attrs.field(default=1e-9, validator=_tolerance)
    #: Send kline_check events downstream: "none", only "mismatches", or "all" checks.
    emit: Literal["none", "mismatches", "all"] = "none"
    #: Candles waiting for their partner, at most (oldest given up first).
    max_pending: int = attrs.field(default=100_000, validator=at_least(1))


def _differs(a: float, b: float, tolerance: float) -> bool:
    if a == b:
        return False
    return not abs(a - b) <= tolerance * max(abs(a), abs(b))


class KlineVerify:
    """Matches built klines with reference klines and reports the differences."""

    def __init__(self, config: VerifyConfig, context: Context) -> None:
        self.config = config
        self.context = context
        self.metrics = context.metrics
        self.log = RateLimitedLog(context.logger)
        #: (channel, symbol, interval) -> start -> (is_built, kline) waiting for a partner
        self.pending: dict[Series, dict[int, tuple[bool, Kline]]] = {}
        self.pending_count = 0
        #: series the reference stream has carried
        self.referenced: set[Series] = set()
        #: series -> newest start seen (either side)
        self.newest: dict[Series, int] = {}

    def process(self, batch: Sequence[Event]) -> list[Event]:
        # KlineCheck is not one of the core's event types, but renders like one.
        out: list[Any] = []
        for k in batch:
            if k.__class__ is not Kline:
                continue
            assert isinstance(k, Kline)
            if not k.closed or k.partial:
                continue
            self._add(k, k.trade_count is not None, out)
        return out

    def _add(self, k: Kline, built: bool, out: list[Any]) -> None:
        series = (k.channel, k.symbol, k.interval)
        if not built:
            self.referenced.add(series)
        elif series not in self.referenced:
            self.metrics.inc("no_reference")
            return
        waiting = self.pending.get(series)
        if waiting is None:
            waiting = self.pending[series] = {}
        newest = self.newest.get(series)
        if newest is None or k.timestamp > newest:
            self.newest[series] = k.timestamp
            before = k.timestamp - 2 * k.interval
            for start in [s for s in waiting if s < before]:
                old_built, _ = waiting.pop(start)
                self.pending_count -= 1
                self.metrics.inc("unmatched_built" if old_built else "unmatched_reference")
        other = waiting.get(k.timestamp)
        if other is None:
            if self.pending_count >= self.config.max_pending:
                self.metrics.inc("pending_full")
                return
            waiting[k.timestamp] = (built, k)
            self.pending_count += 1
            return
        if other[0] == built:
            self.metrics.inc("duplicates")  # a repeated confirm: the first one counts
            return
        del waiting[k.timestamp]
        self.pending_count -= 1
        ours, ref = (k, other[1]) if built else (other[1], k)
        self._compare(ours, ref, out)

    def _compare(self, ours: Kline, ref: Kline, out: list[Any]) -> None:
        tol = self.config.tolerance
        a = tuple(float(getattr(ours, f)) for f in FIELDS)
        b = tuple(float(getattr(ref, f)) for f in FIELDS)
        bad = [f for f, x, y in zip(FIELDS, a, b, strict=True) if _differs(x, y, tol)]
        if ours.turnover is not None and ref.turnover is not None and \
                _differs(ours.turnover, ref.turnover, tol):
            bad.append("turnover")
        self.metrics.inc("checked")
        label = interval_label(ours.interval)
        if bad:
            self.metrics.inc(f"mismatch.{ours.symbol}.{label}")
            self.metrics.inc("mismatches")
            for f in bad:
                self.metrics.inc(f"mismatch_field.{f}")
            details = "; ".join(
                f"{f} ours {getattr(ours, f)!r} reference {getattr(ref, f)!r}" for f in bad)
            self.log.warning(
                f"mismatch.{ours.channel}.{ours.symbol}.{label}",
                "kline mismatch %s %s %s at %d: %s",
                ours.channel, ours.symbol, label, ours.timestamp, details)
        else:
            self.metrics.inc("matched")
        emit = self.config.emit
        if emit == "all" or (emit == "mismatches" and bad):
            out.append(KlineCheck(ours.channel, ours.symbol, ours.interval, ours.timestamp,
                                  not bad, ",".join(bad), a, b))

    async def run(
        self, emit: Emit, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        await trio.sleep_forever()


__all__ = ["FIELDS", "KlineCheck", "KlineVerify", "VerifyConfig"]
