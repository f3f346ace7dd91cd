"""Trade builders and the reference kline computation the aggregator is checked against."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal

from streamer._events import Kline, Trade

DAY_MS = 86_400_000


def epoch_aligned_start(ts: int, interval_ms: int) -> int:
    """The candle start the plain way, for intervals that divide a day (candles of those
    are aligned to the epoch); not the aggregator's own formula, which it checks."""
    assert DAY_MS % interval_ms == 0, f"{interval_ms} ms: use a sub-day interval here"
    return ts - ts % interval_ms


def trade(ts: int, price: float | str, size: float | str = "1", symbol: str = "BTCUSDT",
          channel: str = "linear") -> Trade:
    return Trade(channel, symbol, ts, "Buy", str(price), str(size), f"id-{ts}")


def reference_klines(
    trades: Iterable[Trade], intervals: Iterable[int], until_ms: int, fill_gaps: bool = True
) -> list[tuple]:
    """Closed klines computed the plain way: group by (channel, symbol, interval, open time);
    open = earliest trade (first arrival on ties), close = latest (last arrival on ties);
    flat klines between a key's first candle and ``until_ms`` when ``fill_gaps``.
    Returns comparable tuples (see :func:`kline_key`; the aggregator's turnover is on)."""
    groups: dict[tuple, list[Trade]] = defaultdict(list)
    for t in trades:
        for ms in intervals:
            groups[(t.channel, t.symbol, ms, epoch_aligned_start(t.ts, ms))].append(t)
    out: dict[tuple, tuple] = {}
    for (ch, sym, ms, start), ts in groups.items():
        if start + ms > until_ms:
            continue
        first = min(range(len(ts)), key=lambda i: (ts[i].ts, i))
        last = max(range(len(ts)), key=lambda i: (ts[i].ts, i))
        prices = [float(t.price) for t in ts]
        out[(ch, sym, ms, start)] = (
            ch, sym, ms, start, prices[first], max(prices), min(prices), prices[last],
            float(sum(Decimal(t.size) for t in ts)), len(ts),
            float(sum(Decimal(t.price) * Decimal(t.size) for t in ts)),
        )
    if fill_gaps:
        keys = defaultdict(list)
        for (ch, sym, ms, start) in out:
            keys[(ch, sym, ms)].append(start)
        for (ch, sym, ms), starts in keys.items():
            s = min(starts)
            prev_close = None
            while s + ms <= until_ms:
                got = out.get((ch, sym, ms, s))
                if got is None and prev_close is not None:
                    out[(ch, sym, ms, s)] = (ch, sym, ms, s, prev_close, prev_close, prev_close,
                                             prev_close, 0.0, 0, 0.0)
                elif got is not None:
                    prev_close = got[7]
                s += ms
    return sorted(out.values())


def kline_key(k: Kline) -> tuple:
    return (k.channel, k.symbol, k.interval, k.timestamp, k.open, k.high, k.low, k.close,
            k.volume, k.trade_count, k.turnover)


def assert_same(got: list[tuple], want: list[tuple]) -> None:
    """Equal, volumes and turnovers too: the float nearest the exact decimal sum."""
    assert got == want
