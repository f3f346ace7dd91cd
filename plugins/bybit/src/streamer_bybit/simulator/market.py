"""Market model of the fake: instruments, integer-exact prices, candles, tickers.

Prices and sizes are kept as integers scaled by the symbol's price / quantity decimals, so
volumes and turnovers are exact and the same whichever way they are summed (the WebSocket
kline, the REST kline and ``FakeBybit.klines`` always agree to the last digit).
"""

from __future__ import annotations

import calendar
import collections
import datetime as _dt
import random
from collections.abc import MutableSequence
from decimal import Decimal
from typing import Any

INTERVALS = ("1", "3", "5", "15", "30", "60", "120", "240", "360", "720", "D", "W", "M")
_MINUTE = 60_000
_DAY = 86_400_000
_WEEK = 7 * _DAY
_MONDAY_OFFSET = 4 * _DAY  # 1970-01-05 was the first Monday after the epoch


def fmt(n: int, d: int) -> str:
    """Integer ``n`` scaled by 10**d as a fixed-point decimal string."""
    if d == 0:
        return str(n)
    s = str(-n if n < 0 else n)
    if len(s) <= d:
        s = "0" * (d + 1 - len(s)) + s
    out = s[:-d] + "." + s[-d:]
    return "-" + out if n < 0 else out


def fmt_trim(n: int, d: int) -> str:
    """Like ``fmt`` but without trailing zeros ("12.5", "3")."""
    s = fmt(n, d)
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s


def to_int(value, d: int) -> int:
    """A price/size given as str/float/int/Decimal, rounded to the nearest 10**-d."""
    if isinstance(value, int):
        return value * 10**d
    return int((Decimal(str(value)) * (10**d)).to_integral_value())


def period_start(ts: int, interval: str) -> int:
    """Start (ms) of the candle holding ``ts``: aligned to the UTC epoch, weeks on Monday
    00:00 UTC, months on the first of the calendar month (as Bybit)."""
    if interval == "D":
        return ts - ts % _DAY
    if interval == "W":
        return ts - (ts - _MONDAY_OFFSET) % _WEEK
    if interval == "M":
        d = _dt.datetime.fromtimestamp(ts // 1000, tz=_dt.timezone.utc)
        return calendar.timegm((d.year, d.month, 1, 0, 0, 0)) * 1000
    step = int(interval) * _MINUTE
    return ts - ts % step


def period_end(start: int, interval: str) -> int:
    """Last millisecond of the candle starting at ``start`` (end = next start - 1)."""
    if interval == "D":
        return start + _DAY - 1
    if interval == "W":
        return start + _WEEK - 1
    if interval == "M":
        d = _dt.datetime.fromtimestamp(start // 1000, tz=_dt.timezone.utc)
        y, m = (d.year + 1, 1) if d.month == 12 else (d.year, d.month + 1)
        return calendar.timegm((y, m, 1, 0, 0, 0)) * 1000 - 1
    return start + int(interval) * _MINUTE - 1


class Candle:
    __slots__ = ("close", "high", "low", "open", "start", "ts", "turnover", "volume")

    def __init__(self, start: int, price: int, size: int, ts: int) -> None:
        self.start = start
        self.open = self.high = self.low = self.close = price
        self.volume = size
        self.turnover = price * size
        self.ts = ts

    def add(self, price: int, size: int, ts: int) -> None:
        if price > self.high:
            self.high = price
        elif price < self.low:
            self.low = price
        self.close = price
        self.volume += size
        self.turnover += price * size
        if ts > self.ts:
            self.ts = ts

    def merge(self, other: Candle) -> None:
        """Fold a later sub-candle into this one (used to aggregate 1-minute candles)."""
        self.high = max(self.high, other.high)
        self.low = min(self.low, other.low)
        self.close = other.close
        self.volume += other.volume
        self.turnover += other.turnover
        self.ts = max(self.ts, other.ts)


# Known instruments: (base, price decimals, qty decimals, start price)
_KNOWN = {
    "BTCUSDT": ("BTC", 2, 3, "65000"),
    "ETHUSDT": ("ETH", 2, 2, "3500"),
    "SOLUSDT": ("SOL", 3, 1, "150"),
    "XRPUSDT": ("XRP", 4, 0, "0.6"),
    "1000PEPEUSDT": ("1000PEPE", 7, 0, "0.012"),
    "DOGEUSDT": ("DOGE", 5, 0, "0.15"),
    "BNBUSDT": ("BNB", 2, 2, "580"),
    "ADAUSDT": ("ADA", 4, 0, "0.45"),
}


class Instrument:
    """One symbol of one category, with its trade/kline/ticker state."""

    def __init__(self, category: str, symbol: str, rng: random.Random, status: str = "Trading"):
        self.category = category
        self.symbol = symbol
        self.status = status
        if symbol in _KNOWN:
            base, pd, qd, start = _KNOWN[symbol]
            price = Decimal(start)
        else:
            base = symbol
            for q in ("USDT", "USDC", "PERP"):
                if symbol.endswith(q) and len(symbol) > len(q):
                    base = symbol[: -len(q)]
                    break
            price = Decimal(str(round(10 ** rng.uniform(-2, 4), 6)))
            if price >= 1000:
                pd, qd = 2, 3
            elif price >= 10:
                pd, qd = 3, 2
            elif price >= 1:
                pd, qd = 4, 1
            else:
                pd, qd = 6, 0
        self.base = base
        self.quote = "USDC" if symbol.endswith("USDC") else "USDT"
        self.pd = pd  # price decimals
        self.qd = qd  # quantity decimals
        self.price = int(price * 10**pd)  # last price, in ticks
        self.prev_price = self.price
        self.seq = rng.randrange(1_000_000_000, 9_000_000_000)
        # spot: numeric trade ids; linear: the last 12 (decimal, so hex too) UUID digits
        self.exec_num = rng.randrange(100_000_000_000, 200_000_000_000)
        # a linear trade id is a fixed random UUID prefix + a counter (valid, unique, cheap)
        h = "%020x" % rng.getrandbits(80)
        self.uuid_prefix = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-"
        self.sizes = [(q, fmt(q, self.qd)) for q in
                      (self.random_size(i / 500) for i in range(500))]
        self._pcache: dict[int, str] = {}
        self.live_lo, self.live_hi = 0, -1  # ts range where every live candle stays live
        self.tracked: list = []
        self.tracked_ts = self.tracked_n = -1
        # dicts (trade()) or tuples (run_market); a deque when FakeBybit(history_limit=...)
        self.history: MutableSequence[Any] = []
        self.appended = 0  # trades ever appended to history (it may be a bounded deque)
        #: (trio time, ``appended`` then) after each push, while a REST lag is in use
        self.pushes: collections.deque[tuple[float, int]] = collections.deque()
        # candles: interval -> {start: Candle}; "1" always tracked, others once asked for
        self.candles: dict[str, dict[int, Candle]] = {"1": {}}
        self.live: dict[str, int] = {}  # interval -> start of the newest candle
        # ticker
        self.ticker: dict[str, str] = {}
        self.cs = rng.randrange(10_000_000_000, 90_000_000_000)
        self._init_ticker(rng)

    def step(self) -> int:
        """Random-walk step in ticks (~0.005% of the price)."""
        return max(1, self.price // 20000)

    def random_size(self, r: float) -> int:
        """A size in quantity units from r in [0, 1): 1..2000 steps (0.001 BTC..2 BTC)."""
        return (1 + int(r * 2000)) * (10 ** self.qd // 1000 if self.qd >= 3 else 1)

    def next_uuid(self) -> str:
        self.exec_num += 1
        return self.uuid_prefix + str(self.exec_num)

    def price_str(self, p: int) -> str:
        s = self._pcache.get(p)
        if s is None:
            if len(self._pcache) > 100_000:
                self._pcache.clear()
            s = self._pcache[p] = fmt(p, self.pd)
        return s

    def tick_direction(self, p: int) -> str:
        last = self.price
        if p > last:
            return "PlusTick"
        if p < last:
            return "MinusTick"
        return "ZeroPlusTick" if self.prev_price <= last else "ZeroMinusTick"

    # ---- tickers -------------------------------------------------------------------
    def _init_ticker(self, rng: random.Random) -> None:
        p, pd = self.price, self.pd
        prev24 = int(p * rng.uniform(0.95, 1.05)) or 1
        hi = max(p, prev24) + max(1, p // 50)
        lo = max(1, min(p, prev24) - max(1, p // 50))
        vol = rng.randrange(10**5, 10**8) * 10**self.qd // 100
        pct = (Decimal(p) / Decimal(prev24) - 1).quantize(Decimal("0.000001"))
        t = {
            "symbol": self.symbol,
            "lastPrice": fmt(p, pd),
            "highPrice24h": fmt(hi, pd),
            "lowPrice24h": fmt(lo, pd),
            "prevPrice24h": fmt(prev24, pd),
            "volume24h": fmt(vol, self.qd),
            "turnover24h": fmt_trim(vol * p, self.qd + pd),
            "price24hPcnt": str(pct),
        }
        if self.category in ("linear", "inverse"):
            t.update(
                {
                    "tickDirection": "PlusTick",
                    "prevPrice1h": fmt(int(p * 0.999) or 1, pd),
                    "markPrice": fmt(p, pd),
                    "indexPrice": fmt(p, pd),
                    "openInterest": fmt(vol // 3, self.qd),
                    "openInterestValue": fmt_trim(vol // 3 * p, self.qd + pd),
                    "nextFundingTime": "0",
                    "fundingRate": "0.0001",
                    "bid1Price": fmt(p - 1, pd),
                    "bid1Size": fmt(rng.randrange(1, 10**4) * 10**self.qd // 10, self.qd),
                    "ask1Price": fmt(p, pd),
                    "ask1Size": fmt(rng.randrange(1, 10**4) * 10**self.qd // 10, self.qd),
                }
            )
        else:
            t["usdIndexPrice"] = fmt(p, pd)
        self.ticker = t

    # ---- candles -------------------------------------------------------------------
    def track(self, interval: str) -> dict[int, Candle]:
        """Candles of ``interval``, kept incrementally from now on (built from 1m now)."""
        got = self.candles.get(interval)
        if got is None:
            got = self.aggregate(interval)
            self.candles[interval] = got
            if got:
                self.live[interval] = max(got)
            self.live_hi = -1  # re-check candles on the next trade
        return got

    def aggregate(self, interval: str) -> dict[int, Candle]:
        if interval in self.candles:
            return self.candles[interval]
        out: dict[int, Candle] = {}
        for start in sorted(self.candles["1"]):
            m = self.candles["1"][start]
            ps = period_start(start, interval)
            c = out.get(ps)
            if c is None:
                c = Candle(ps, m.open, 0, m.ts)
                c.high, c.low, c.close = m.high, m.low, m.close
                c.volume, c.turnover = m.volume, m.turnover
                out[ps] = c
            else:
                c.merge(m)
        return out

    def candle_dict(self, c: Candle, interval: str, confirm: bool, now: int) -> dict:
        pd = self.pd
        return {
            "start": c.start,
            "end": period_end(c.start, interval),
            "interval": interval,
            "open": fmt(c.open, pd),
            "close": fmt(c.close, pd),
            "high": fmt(c.high, pd),
            "low": fmt(c.low, pd),
            "volume": fmt(c.volume, self.qd),
            "turnover": fmt_trim(c.turnover, pd + self.qd),
            "confirm": confirm,
            "timestamp": now,
        }

    def candle_row(self, c: Candle) -> list[str]:
        pd = self.pd
        return [
            str(c.start),
            fmt(c.open, pd),
            fmt(c.high, pd),
            fmt(c.low, pd),
            fmt(c.close, pd),
            fmt(c.volume, self.qd),
            fmt_trim(c.turnover, pd + self.qd),
        ]

    # ---- instruments-info ----------------------------------------------------------
    def info(self) -> dict:
        tick = fmt(1, self.pd)
        step = fmt_trim(1, self.qd) if self.qd else "1"
        if self.category in ("linear", "inverse"):
            return {
                "symbol": self.symbol,
                "contractType": "LinearPerpetual",
                "status": self.status,
                "baseCoin": self.base,
                "quoteCoin": self.quote,
                "launchTime": "1585526400000",
                "deliveryTime": "0",
                "deliveryFeeRate": "",
                "priceScale": str(self.pd),
                "leverageFilter": {
                    "minLeverage": "1", "maxLeverage": "100.00", "leverageStep": "0.01"
                },
                "priceFilter": {"minPrice": tick, "maxPrice": "1999999.80", "tickSize": tick},
                "lotSizeFilter": {
                    "maxOrderQty": "1190.000",
                    "minOrderQty": step,
                    "qtyStep": step,
                    "postOnlyMaxOrderQty": "1190.000",
                    "maxMktOrderQty": "500.000",
                    "minNotionalValue": "5",
                },
                "unifiedMarginTrade": True,
                "fundingInterval": 480,
                "settleCoin": self.quote,
                "copyTrading": "both",
                "upperFundingRate": "0.00375",
                "lowerFundingRate": "-0.00375",
                "isPreListing": self.status == "PreLaunch",
                "preListingInfo": None,
            }
        return {
            "symbol": self.symbol,
            "baseCoin": self.base,
            "quoteCoin": self.quote,
            "innovation": "0",
            "status": self.status,
            "marginTrading": "both",
            "stTag": "0",
            "lotSizeFilter": {
                "basePrecision": step,
                "quotePrecision": "0.00000001",
                "minOrderQty": step,
                "maxOrderQty": "71.73956243",
                "minOrderAmt": "1",
                "maxOrderAmt": "2000000",
            },
            "priceFilter": {"tickSize": tick},
            "riskParameters": {"priceLimitRatioX": "0.05", "priceLimitRatioY": "0.05"},
        }


def trade_dict(t) -> dict:
    """History entries are dicts (``trade()``) or tuples (``run_market``'s fast path)."""
    if isinstance(t, dict):
        return t
    ts, sym, side, qs, ps, tick, tid, seq = t
    d = {"T": ts, "s": sym, "S": side, "v": qs, "p": ps}
    if tick is not None:
        d["L"] = tick
    d["i"] = tid
    if seq is not None:
        d["BT"] = False
        d["RPI"] = False
        d["seq"] = seq
    return d
