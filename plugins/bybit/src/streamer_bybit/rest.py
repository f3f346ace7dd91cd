"""Bybit V5 public market REST calls on ``streamer.net.get_json``.

Bybit wraps every answer in ``{"retCode", "retMsg", "result", "retExtInfo", "time"}``; a
``retCode`` other than 0 is an error even with HTTP 200, raised as :class:`BybitRestError`;
so is an answer whose shape is not the endpoint's (no envelope, ``result.list`` not an array
of objects, a ``retCode`` or ``time`` that is not a number). The rows' fields are the
caller's to check.
Network trouble surfaces as ``OSError`` / ``trio.TooSlowError`` and HTTP errors as
``streamer.net.HttpError``, unchanged, so callers can log them plainly.
"""

from __future__ import annotations

import fnmatch
import ssl
from typing import Any, Final

from streamer.net import get_json

#: Largest ``limit`` Bybit accepts for /v5/market/recent-trade, per category.
RECENT_TRADES_MAX: Final = {"linear": 1000, "inverse": 1000, "option": 1000, "spot": 60}
#: Page size of linear and inverse (spot is not paginated; option pages hold 500 at most).
INSTRUMENTS_PAGE: Final = {"linear": 1000, "inverse": 1000, "option": 500}
MAX_PAGES: Final = 1000  # a bound on cursor loops, against a server that never stops


class BybitRestError(Exception):
    """Bybit answered with ``retCode != 0``."""

    def __init__(self, path: str, ret_code: int, ret_msg: str) -> None:
        super().__init__(f"{path}: retCode {ret_code}: {ret_msg}")
        self.path = path
        self.ret_code = ret_code
        self.ret_msg = ret_msg


class BybitRest:
    def __init__(
        self, base_url: str, *, timeout: float = 10.0, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.ssl_context = ssl_context

    async def _get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        result = (await self._get_envelope(path, params)).get("result")
        return result if isinstance(result, dict) else {}

    async def _get_envelope(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        body = await get_json(
            self.base_url + path, params, timeout=self.timeout, ssl_context=self.ssl_context
        )
        if not isinstance(body, dict) or "retCode" not in body:
            # the type only: the repr of a hostile body can be huge or too deep to build
            raise BybitRestError(path, -1, f"not a Bybit envelope: a JSON {_kind(body)}")
        code = body["retCode"]
        if type(code) is not int:
            raise BybitRestError(path, -1, f"not a Bybit envelope: retCode is a JSON {_kind(code)}")
        if code != 0:
            msg = body.get("retMsg")
            raise BybitRestError(path, code, msg[:200] if isinstance(msg, str) else _kind(msg))
        return body

    @staticmethod
    def _rows(path: str, result: dict[str, Any]) -> list[Any]:
        """``result.list``: a JSON array (missing or null: empty)."""
        rows = result.get("list")
        if rows is None:
            return []
        if not isinstance(rows, list):
            raise BybitRestError(path, -1, f"bad answer: result.list is a JSON {_kind(rows)}")
        return rows

    @staticmethod
    def _objects(path: str, rows: list[Any]) -> list[dict[str, Any]]:
        for row in rows:
            if not isinstance(row, dict):
                raise BybitRestError(path, -1, f"bad answer: a row is a JSON {_kind(row)}")
        return rows

    async def instruments(
        self, category: str, *, status: str | None = "Trading", base_coin: str | None = None
    ) -> list[dict[str, Any]]:
        """Every instrument of ``category`` (all pages, following ``nextPageCursor``);
        ``base_coin``: only that coin's (an option list is per base coin, BTC's without)."""
        params: dict[str, Any] = {"category": category, "status": status}
        if base_coin is not None:
            params["baseCoin"] = base_coin
        if category != "spot":
            params["limit"] = INSTRUMENTS_PAGE.get(category, 500)
        out: list[dict[str, Any]] = []
        for _ in range(MAX_PAGES):
            path = "/v5/market/instruments-info"
            result = await self._get(path, params)
            page = self._objects(path, self._rows(path, result))
            if not all(isinstance(i.get("symbol"), str) for i in page):
                raise BybitRestError(path, -1, "bad answer: an instrument without a symbol")
            out.extend(page)
            cursor = result.get("nextPageCursor")
            if category == "spot" or not cursor:
                return out
            if not isinstance(cursor, str):
                raise BybitRestError(path, -1, f"bad answer: nextPageCursor is a JSON "
                                     f"{_kind(cursor)}")
            params["cursor"] = cursor
        raise BybitRestError("/v5/market/instruments-info", -1, "too many pages")

    async def option_base_coins(self) -> list[dict[str, Any]]:
        """Bybit's option base coins (``/v5/market/option-base-coins``: ``baseCoin``,
        ``hasSymbol``, ``quoteCoin``, ...), one row each, as answered."""
        path = "/v5/market/option-base-coins"
        return list(self._objects(path, self._rows(path, await self._get(path, {}))))

    async def recent_trades(
        self, category: str, symbol: str, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Recent public trades, newest first as Bybit returns them (limit capped per category)."""
        cap = RECENT_TRADES_MAX.get(category, 60)
        limit = cap if limit is None else max(1, min(limit, cap))
        path = "/v5/market/recent-trade"
        result = await self._get(path, {"category": category, "symbol": symbol, "limit": limit})
        return list(self._objects(path, self._rows(path, result)))

    async def klines(
        self,
        category: str,
        symbol: str,
        interval: str,
        *,
        start: int | None = None,
        end: int | None = None,
        limit: int | None = None,
    ) -> tuple[list[list[str]], int]:
        """Kline rows ``[start, open, high, low, close, volume, turnover]``, newest first, and
        the server's ``time`` (ms) of the answer: the moment the newest row stood as given."""
        body = await self._get_envelope(
            "/v5/market/kline",
            {
                "category": category,
                "symbol": symbol,
                "interval": interval,
                "start": start,
                "end": end,
                "limit": limit,
            },
        )
        result = body.get("result")
        rows = self._rows("/v5/market/kline", result) if isinstance(result, dict) else []
        snapshot = body.get("time") or 0
        if type(snapshot) is not int:
            raise BybitRestError("/v5/market/kline", -1,
                                 f"bad answer: time is a JSON {_kind(snapshot)}")
        return list(rows), snapshot


def trading_symbols(instruments: list[dict[str, Any]]) -> list[str]:
    """The names of the instruments listed as trading (no status: trading), in order."""
    return [i["symbol"] for i in instruments
            if i.get("status", "Trading") == "Trading" and i["symbol"]]


def matching_symbols(instruments: list[dict[str, Any]], pattern: str,
                     limit: int | None = None) -> list[str]:
    """The trading symbols that match ``pattern`` (``fnmatch``, ``"*"``: all), the first
    ``limit`` of them."""
    symbols = [s for s in trading_symbols(instruments)
               if pattern == "*" or fnmatch.fnmatchcase(s, pattern)]
    return symbols[:limit] if limit is not None else symbols


def _kind(value: Any) -> str:
    """The JSON type of a decoded ``value`` (what an error may say of a hostile answer)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"
