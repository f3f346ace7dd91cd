"""The fake's REST market API: server time, instruments (linear paged by cursor), klines and
recent trades, in Bybit's envelope (``retCode``, ``retMsg``, ``result``, ``time``).

Faults (``reachable``, ``rest_failing``, ``rest_bodies``, ``rest_rate_limit``) are applied
before a request reaches its endpoint; delays are the request handler's (server.py).
"""

from __future__ import annotations

import base64
from urllib.parse import parse_qsl, urlsplit

import msgspec
import trio

from streamer.clock import now_ms

from . import categories as cats
from .market import INTERVALS, Instrument, trade_dict
from .state import FakeState

_dumps = msgspec.json.encode


class RestApi(FakeState):
    """The REST side of the fake."""

    def _rest(self, method: str, target: str) -> tuple[int, bytes]:
        parts = urlsplit(target)
        path = parts.path
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        self.rest_requests.append((path, query))
        if not self.reachable or path in self.rest_failing:
            return 503, b'{"error":"service unavailable"}'
        raw = self.rest_bodies.get(path)
        if raw:
            return 200, raw.pop(0)
        if self.rest_rate_limit is not None:
            n, window = self.rest_rate_limit
            now = trio.current_time()
            dq = self._rest_times
            while dq and dq[0] <= now - window:
                dq.popleft()
            if len(dq) >= n:
                return 403, self._envelope(None, 10006, "Too many visits!")
            dq.append(now)
        handler = {
            "/v5/market/time": self._rest_time,
            "/v5/market/instruments-info": self._rest_instruments,
            "/v5/market/option-base-coins": self._rest_option_coins,
            "/v5/market/kline": self._rest_kline,
            "/v5/market/recent-trade": self._rest_recent,
        }.get(path)
        if handler is None:
            return 404, b'{"error":"not found"}'
        if method != "GET":
            return 405, b'{"error":"method not allowed"}'
        try:
            result = handler(query)
        except _RestError as e:
            return 200, self._envelope({}, e.code, e.msg)
        return 200, self._envelope(result)

    def _envelope(self, result, code: int = 0, msg: str = "OK") -> bytes:
        return _dumps({"retCode": code, "retMsg": msg, "result": {} if result is None else result,
                       "retExtInfo": {}, "time": now_ms()})

    def _category(self, q) -> str:
        cat = q.get("category")
        if cat not in self.markets:
            raise _RestError(10001, "Illegal category")
        return cat

    def _symbol(self, cat, q) -> Instrument:
        sym = q.get("symbol")
        if not sym:
            raise _RestError(10001, "params error: symbol is required")
        inst = self.markets[cat].get(sym)
        if inst is None:
            raise _RestError(10001, "Not supported symbols")
        return inst

    @staticmethod
    def _int(q, name, default, lo, hi) -> int:
        v = q.get(name)
        if v in (None, ""):
            return default
        try:
            n = int(v)
        except ValueError:
            raise _RestError(10001, f"params error: {name} invalid") from None
        return max(lo, min(hi, n))

    def _rest_time(self, q) -> dict:
        ms = now_ms()
        return {"timeSecond": str(ms // 1000), "timeNano": str(ms * 1_000_000)}

    def _rest_instruments(self, q) -> dict:
        cat = self._category(q)
        items = cats.instruments_of(cat, list(self.markets[cat].values()), q)
        if q.get("symbol"):
            items = [i for i in items if i.symbol == q["symbol"]]
        if q.get("status"):
            items = [i for i in items if i.status == q["status"]]
        if q.get("baseCoin"):
            items = [i for i in items if i.base == q["baseCoin"]]
        if cat == "spot":
            return {"category": cat, "list": [i.info() for i in items]}
        limit = self._int(q, "limit", 500, 1, 1000)
        offset = 0
        cursor = q.get("cursor")
        if cursor:
            try:
                offset = int(base64.urlsafe_b64decode(cursor.encode()).decode().split("=")[1])
            except Exception:
                raise _RestError(10001, "params error: cursor invalid") from None
        page = items[offset: offset + limit]
        nxt = ""
        if offset + limit < len(items):
            nxt = base64.urlsafe_b64encode(f"offset={offset + limit}".encode()).decode()
        info = [i.info() if cat == "linear" else cats.instrument_info(i, i.info()) for i in page]
        return {"category": cat, "list": info, "nextPageCursor": nxt}

    def _rest_option_coins(self, q) -> dict:
        return cats.option_base_coins(list(self.markets["option"].values()))

    def _rest_kline(self, q) -> dict:
        cat = self._category(q)
        inst = self._symbol(cat, q)
        interval = q.get("interval")
        if interval not in INTERVALS:
            raise _RestError(10001, "Invalid period!")
        limit = self._int(q, "limit", 200, 1, 1000)
        start = self._int(q, "start", None, 0, 1 << 62)
        end = self._int(q, "end", None, 0, 1 << 62)
        candles = inst.aggregate(interval)
        rows = []
        for s in sorted(candles, reverse=True):
            if end is not None and s > end:
                continue
            if start is not None and s < start:
                break
            rows.append(inst.candle_row(candles[s]))
            if len(rows) >= limit:
                break
        return {"category": cat, "symbol": inst.symbol, "list": rows}

    def _rest_recent(self, q) -> dict:
        cat = self._category(q)
        inst = self._symbol(cat, q)
        default, hi = (500, 1000) if cat == "linear" else (60, 60)
        limit = self._int(q, "limit", default, 1, hi)
        hist = inst.history
        # history[i] is trade number appended - len(hist) + i; the lag hides the newest ones
        newest = min(len(hist), self._visible(inst) - (inst.appended - len(hist))) - 1
        out = []
        for i in range(newest, max(-1, newest - limit), -1):
            t = trade_dict(hist[i])
            row = {"execId": t["i"], "symbol": t["s"], "price": t["p"], "size": t["v"],
                   "side": t["S"], "time": str(t["T"]), "isBlockTrade": t.get("BT", False),
                   "isRPITrade": t.get("RPI", False)}
            if "seq" in t:
                row["seq"] = str(t["seq"])
            out.append(row)
        return {"category": cat, "list": out}


class _RestError(Exception):
    def __init__(self, code: int, msg: str) -> None:
        self.code = code
        self.msg = msg
