"""The options of the aggregate plugin's transforms: what ``streamer check`` structures and
validates. Registering the plugin imports this module only; each transform's module (the
aggregator, the backfill, the verifier, with trio) is imported when the pipeline builds it.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs

from streamer.intervals import parse_interval
from streamer.validators import RETIRED, at_least, between, greater_than

# -- klines.from_trades -------------------------------------------------------------------

_MOVED = (
    "{key} is no longer an option of klines.from_trades: first-candle history now comes "
    "from the input source, with the source's own endpoints. Remove {key} here and set "
    "rest_url / testnet (and ca_file) on the bybit.linear / bybit.spot source instead"
)


def _intervals(_: Any, __: attrs.Attribute[list[str]], value: list[str]) -> None:
    if not value:
        raise ValueError("intervals must list at least one interval, e.g. [\"1m\"]")
    lengths = [parse_interval(i) for i in value]
    if len(set(lengths)) != len(lengths):
        raise ValueError(f"intervals lists an interval twice: {value}")


def _backfill_timeout(_: Any, __: attrs.Attribute[float], value: float) -> None:
    if not 0 < value <= 300:
        raise ValueError(f"backfill_timeout_s: expected more than 0 and at most 300, "
                         f"got {value!r}")


@attrs.define
class KlineConfig:
    """Options are checked by field validators, so the config loader reports every bad one
    at once, each with its path."""

    #: Candle lengths: any <n><unit> from 100ms (ms, s, m, h, D, W, M), e.g. "500ms", "10s",
    #: "1m", "50m", "4h", "1D", "1W", "2M"; see streamer.intervals.
    intervals: list[str] = attrs.field(factory=lambda: ["1m"], validator=_intervals)
    #: Close a candle ``waiter_latency_ms`` after its boundary (late trades still count);
    #: false: close on the first trade of a later interval or at the boundary.
    waiter: bool = True
    waiter_latency_ms: int = attrs.field(default=100, validator=between(80, 150))
    #: "closed": each kline once, when it closes; "every_trade": the open kline after each
    #: batch, then the closed one; "throttled": open klines at most every update_interval_ms.
    updates: Literal["closed", "every_trade", "throttled"] = "closed"
    update_interval_ms: int = attrs.field(default=1000, validator=between(50, 3_600_000))
    #: Emit flat klines (o=h=l=c=previous close, volume 0) for intervals without trades.
    fill_gaps: bool = True
    #: Add turnover (the exact sum of price*size, as Bybit's klines carry) to every kline.
    turnover: bool = True
    #: The first candle of a symbol opened before we were listening: complete it from the
    #: trades a sink stored ("backfill": when it holds every one since the candle opened),
    #: else from the input source's history (falls back to "partial" if that fails or the
    #: source has none), emit it flagged ``partial`` ("partial") or drop it ("skip").
    first_candle: Literal["backfill", "partial", "skip"] = "backfill"
    #: A first candle waits at most this long (s) for its history, then goes on partial.
    backfill_timeout_s: float = attrs.field(default=10.0, validator=_backfill_timeout)
    #: When a source reports a stream gap (a lost connection), the candles it overlaps wait
    #: this long for the recovered trades before closing anyway, flagged partial.
    gap_hold_s: float = attrs.field(default=60.0, validator=between(0, 3600))
    #: Moved to the source: setting either is a configuration error that says so.
    rest_url: Any = attrs.field(default=None, metadata=RETIRED)
    testnet: Any = attrs.field(default=None, metadata=RETIRED)

    #: Interval lengths in ms, parsed from ``intervals``.
    interval_ms: list[int] = attrs.field(init=False, factory=list)

    def __attrs_post_init__(self) -> None:
        for key in ("rest_url", "testnet"):
            if getattr(self, key) is not None:
                raise ValueError(_MOVED.format(key=key))
        try:
            self.interval_ms = [parse_interval(i) for i in self.intervals]
        except ValueError:
            self.interval_ms = []  # the field validator of intervals reports it


# -- klines.passthrough -------------------------------------------------------------------

@attrs.define
class PassthroughConfig:
    #: "closed": only closed candles (confirm=true), each exactly once; "all": every update,
    #: with updates of an already closed candle dropped.
    updates: Literal["closed", "all"] = "closed"
    #: Forward only these intervals (e.g. ["1m", "5m"]); empty: every interval received.
    intervals: list[str] = attrs.Factory(list)

    interval_ms: frozenset[int] = attrs.field(init=False, factory=frozenset)

    def __attrs_post_init__(self) -> None:
        self.interval_ms = frozenset(parse_interval(i) for i in self.intervals)


# -- klines.verify -------------------------------------------------------------------------

def _tolerance(_: Any, __: attrs.Attribute[float], value: float) -> None:
    if not 0 <= value < 1:
        raise ValueError(f"tolerance: expected at least 0 and less than 1, got {value!r}")


@attrs.define
class VerifyConfig:
    #: Largest relative difference of prices still equal: |a - b| <= tolerance * max(|a|, |b|)
    #: (volume and turnover are compared exactly).
    tolerance: float = attrs.field(default=1e-9, validator=_tolerance)
    #: Send kline_check events downstream: "none", only "mismatches", or "all" checks.
    emit: Literal["none", "mismatches", "all"] = "none"
    #: Candles waiting for their partner or a history answer, at most.
    max_pending: int = attrs.field(default=100_000, validator=at_least(1))
    #: How long (s) after a built candle's end its reference may take on the kline stream
    #: before the source's history is asked instead.
    reference_wait_s: float = attrs.field(default=10.0,
                                          validator=[greater_than(0), between(0, 3600)])
    #: The longest wait (s) for one history answer; then the candle counts history_timeout.
    history_timeout_s: float = attrs.field(default=10.0,
                                           validator=[greater_than(0), between(0, 300)])


# -- books.top ------------------------------------------------------------------------------

@attrs.define
class BooksTopConfig:
    #: Levels a side in each top snapshot.
    depth: int = attrs.field(default=10, validator=between(1, 1000))
    #: Milliseconds between two top snapshots of one symbol at least (0: every change).
    interval_ms: int = attrs.field(default=100, validator=between(0, 3_600_000))
