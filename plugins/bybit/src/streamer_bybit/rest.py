"""Bybit V5 public market REST calls on ``streamer.net.get_json``.

Bybit wraps every answer in ``{"retCode", "retMsg", "result", "retExtInfo", "time"}``; a
``retCode`` other than 0 is an error even with HTTP 200, raised as :class:`BybitRestError`.
Network trouble surfaces as ``OSError`` / ``trio.TooSlowError`` and HTTP errors as
``streamer.net.HttpError``, unchanged, so callers can log them plainly.
"""

from __future__ import annotations

import ssl
from typing import Any, Final

from streamer.net import get_json

#: Largest ``limit`` Bybit accepts for /v5/market/recent-trade, per category.
RECENT_TRADES_MAX: Final = {"linear": 1000, "spot": 60}
INSTRUMENTS_PAGE: Final = 1000  # linear page size (spot is not paginated)
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
            raise BybitRestError(path, -1, f"not a Bybit envelope: {str(body)[:200]}")
        if body["retCode"] != 0:
            raise BybitRestError(path, int(body["retCode"]), str(body.get("retMsg", "")))
        return body

    async def instruments(
        self, category: str, *, status: str | None = "Trading"
    ) -> list[dict[str, Any]]:
        """Every instrument of ``category`` (all linear pages, following ``nextPageCursor``)."""
        params: dict[str, Any] = {"category": category, "status": status}
        if category != "spot":
            params["limit"] = INSTRUMENTS_PAGE
        out: list[dict[str, Any]] = []
        for _ in range(MAX_PAGES):
            result = await self._get("/v5/market/instruments-info", params)
            out.extend(result.get("list") or [])
            cursor = result.get("nextPageCursor")
            if category == "spot" or not cursor:
                return out
            params["cursor"] = cursor
        raise BybitRestError("/v5/market/instruments-info", -1, "too many pages")

    async def recent_trades(
        self, category: str, symbol: str, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Recent public trades, newest first as Bybit returns them (limit capped per category)."""
        cap = RECENT_TRADES_MAX.get(category, 60)
        limit = cap if limit is None else max(1, min(limit, cap))
        result = await self._get(
            "/v5/market/recent-trade", {"category": category, "symbol": symbol, "limit": limit}
        )
        return list(result.get("list") or [])

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
        rows = result.get("list") if isinstance(result, dict) else None
        return list(rows or []), int(body.get("time") or 0)
