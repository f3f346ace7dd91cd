"""What sets Bybit's categories apart, for the sources: ``linear``, ``inverse``, ``spot`` and
``option`` share the connection machinery; this module holds where they differ.

* Subscribe requests: spot answers "args size >10" past 10 topics per request; linear,
  inverse and option take 100 per request here (their limit is the 21,000 characters of one
  connection's args, :data:`~streamer_bybit.topics.MAX_ARGS_CHARS`).
* Options: the instrument list is per base coin (without ``baseCoin`` Bybit answers BTC's
  alone, so its ``baseCoin`` fields cannot name the others): the coins come from
  ``/v5/market/option-base-coins`` (:func:`listed_option_coins`) unless ``base_coins`` names
  them. Trades come per base coin (``publicTrade.BTC`` carries every BTC option's
  trades, up to 1024 in one message), tickers per option symbol (with the greeks, IVs and
  ``underlyingPrice``). There is no option kline topic. REST recent-trade for options is
  per base coin too, so the per-symbol gap recovery does not apply: a reconnect is
  reported as a stream gap that is not complete (see :func:`recovers_from_rest`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Final

from streamer import Metrics
from streamer.net import HttpError
from streamer_bybit.config import OPTION_BASE_COINS
from streamer_bybit.rest import BybitRest, BybitRestError

#: Topics per subscribe request, per category.
SUBSCRIBE_CHUNK: Final = {"spot": 10, "linear": 100, "inverse": 100, "option": 100}
#: Option base coins followed at most (each is one instrument list to read per refresh and
#: one trades topic): past it, the rest of Bybit's answer is left out, logged and counted.
MAX_OPTION_COINS: Final = 100


def recovers_from_rest(category: str) -> bool:
    """Whether missed trades of ``category`` can be fetched per symbol after a reconnect."""
    return category != "option"


def option_coin(instrument: dict[str, Any]) -> str:
    """The base coin of an option instrument (``baseCoin``, else the symbol's first part)."""
    coin = instrument.get("baseCoin")
    if isinstance(coin, str) and coin:
        return coin
    return str(instrument["symbol"]).partition("-")[0]


async def listed_option_coins(rest: BybitRest) -> tuple[list[str], int]:
    """The option base coins Bybit lists with tradable options (``hasSymbol`` not 0), in its
    order, at most :data:`MAX_OPTION_COINS`; and how many more were left out."""
    coins: list[str] = []
    for row in await rest.option_base_coins():
        coin = row.get("baseCoin")
        if isinstance(coin, str) and coin and row.get("hasSymbol", 1) != 0:
            coins.append(coin.upper())
    coins = list(dict.fromkeys(coins))
    return coins[:MAX_OPTION_COINS], max(0, len(coins) - MAX_OPTION_COINS)


async def option_coins(rest: BybitRest, metrics: Metrics, logger: logging.Logger,
                       name: str) -> list[str]:
    """The base coins whose options a ``bybit.option`` source without ``base_coins`` reads:
    every one Bybit lists (:func:`listed_option_coins`). When Bybit cannot tell (the endpoint
    answers an HTTP or Bybit error, or no coin), :data:`OPTION_BASE_COINS`, logged. A network
    failure is raised: the caller retries as for the instrument lists."""
    try:
        coins, left_out = await listed_option_coins(rest)
    except (HttpError, BybitRestError) as exc:
        metrics.inc("rest_failures")
        logger.warning("%s: cannot list Bybit's option base coins (%s); reading those of %s",
                       name, exc, ", ".join(OPTION_BASE_COINS))
        return list(OPTION_BASE_COINS)
    if left_out:
        metrics.inc("option_coins_left_out", left_out)
        logger.warning("%s: Bybit lists %d option base coins; the first %d are read, %d left "
                       "out (name them in base_coins)", name, MAX_OPTION_COINS + left_out,
                       MAX_OPTION_COINS, left_out)
    if not coins:
        logger.warning("%s: Bybit lists no option base coin; reading those of %s", name,
                       ", ".join(OPTION_BASE_COINS))
        return list(OPTION_BASE_COINS)
    return coins


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
    "MAX_OPTION_COINS",
    "SUBSCRIBE_CHUNK",
    "listed_option_coins",
    "option_coin",
    "option_coins",
    "option_instruments",
    "option_topics",
    "option_trade_symbols",
    "recovers_from_rest",
]
