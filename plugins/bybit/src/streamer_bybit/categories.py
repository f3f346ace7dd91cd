"""What sets Bybit's categories apart, for the sources: ``linear``, ``inverse``, ``spot`` and
``option`` share the connection machinery; this module holds where they differ.

* Subscribe requests: spot answers "args size >10" past 10 topics per request; linear,
  inverse and option take 100 per request here (their limit is the 21,000 characters of one
  connection's args, :data:`~streamer_bybit.topics.MAX_ARGS_CHARS`).
* Options: the instrument list is per base coin (without ``baseCoin`` Bybit answers BTC's
  alone), and trades come per base coin (``publicTrade.BTC`` carries every BTC option's
  trades, up to 1024 in one message), tickers per option symbol (with the greeks, IVs and
  ``underlyingPrice``). There is no option kline topic. REST recent-trade for options is
  per base coin too, so the per-symbol gap recovery does not apply: a reconnect is
  reported as a stream gap that is not complete (see :func:`recovers_from_rest`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from streamer_bybit.rest import BybitRest

#: Topics per subscribe request, per category.
SUBSCRIBE_CHUNK: Final = {"spot": 10, "linear": 100, "inverse": 100, "option": 100}


def recovers_from_rest(category: str) -> bool:
    """Whether missed trades of ``category`` can be fetched per symbol after a reconnect."""
    return category != "option"


def option_coin(instrument: dict[str, Any]) -> str:
    """The base coin of an option instrument (``baseCoin``, else the symbol's first part)."""
    coin = instrument.get("baseCoin")
    if isinstance(coin, str) and coin:
        return coin
    return str(instrument["symbol"]).partition("-")[0]


async def option_instruments(rest: BybitRest, coins: Iterable[str]) -> list[dict[str, Any]]:
    """Every option instrument of ``coins``: one paged list per base coin."""
    out: list[dict[str, Any]] = []
    for coin in coins:
        out.extend(await rest.instruments("option", base_coin=coin))
    return out


def option_topics(streams: Iterable[str], symbols: list[str],
                  coin_of: dict[str, str]) -> list[str]:
    """Topics of ``symbols`` (options): ``publicTrade.<COIN>`` once per base coin (the trades
    or the "price" from trades), then ``tickers.<SYMBOL>`` per symbol when asked for."""
    wanted = set(streams)
    tickers = "tickers" in wanted or ("price" in wanted and "trades" not in wanted)
    topics: list[str] = []
    if "trades" in wanted or ("price" in wanted and not tickers):
        coins = dict.fromkeys(coin_of.get(s, s.partition("-")[0]) for s in symbols)
        topics.extend(f"publicTrade.{coin}" for coin in coins)
    if tickers:
        topics.extend(f"tickers.{s}" for s in symbols)
    return topics


def option_trade_symbols(topics: Iterable[str], symbols: list[str],
                         coin_of: dict[str, str]) -> tuple[str, ...]:
    """The option symbols whose trades the ``publicTrade.<COIN>`` topics among ``topics``
    carry (what a stream gap of that connection concerns)."""
    coins = {t.partition(".")[2] for t in topics if t.startswith("publicTrade.")}
    return tuple(s for s in symbols if coin_of.get(s, s.partition("-")[0]) in coins)


__all__ = [
    "SUBSCRIBE_CHUNK",
    "option_coin",
    "option_instruments",
    "option_topics",
    "option_trade_symbols",
    "recovers_from_rest",
]
