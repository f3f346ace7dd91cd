"""The simulator's inverse and option categories: where they differ from linear and spot.

* inverse (``/v5/public/inverse``): as linear (acks, ticker deltas, instrument pages,
  UUID trade ids), with coin-margined symbols (BTCUSD, ETHUSD).
* option (``/v5/public/option``): symbols such as ``BTC-26DEC26-100000-C``; the instrument
  list is per base coin (without ``baseCoin``: BTC's alone, as Bybit answers); trades are
  pushed per base coin on ``publicTrade.<COIN>`` (up to 1024 in one message), each with
  Bybit's option extras (``iv``, ``mIv``, ``mP``, ``iP``); tickers are snapshots carrying
  the greeks, IVs and ``underlyingPrice``; ``/v5/market/option-base-coins`` lists the base
  coins (``hasSymbol`` 1 while one of its options trades); acks are Bybit's option ``COMMAND_RESP``
  (``data.successTopics`` / ``data.failTopics``), pongs ``{"op": "pong", "args": [ms]}``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from streamer.clock import now_ms

from .market import fmt

if TYPE_CHECKING:
    from .market import Instrument

#: Categories answered like linear (acks, errors, ticker deltas).
LINEAR_LIKE: Final = frozenset({"linear", "inverse"})
#: The option base coin Bybit's instrument list answers without ``baseCoin``.
OPTION_DEFAULT_COIN: Final = "BTC"


def setup_instrument(inst: Instrument) -> None:
    """Fit a new instrument of inverse or option to its category (an inverse one is built
    as linear: its ticker has the linear fields)."""
    if inst.category == "inverse":
        inst.base = inst.symbol[:-3] if inst.symbol.endswith("USD") else inst.symbol
        inst.quote = "USD"
    elif inst.category == "option":
        inst.base = inst.symbol.partition("-")[0]
        inst.quote = "USDC"
        _option_ticker(inst)


def _option_ticker(inst: Instrument) -> None:
    p, pd = inst.price, inst.pd
    inst.ticker.update(
        bid1Price=fmt(max(1, p - 1), pd), bid1Size="1", bid1Iv="0.5", ask1Price=fmt(p, pd),
        ask1Size="1", ask1Iv="0.52", markPrice=fmt(p, pd), indexPrice="94000",
        markPriceIv="0.51", underlyingPrice="94100", openInterest="12.5", totalVolume="100",
        totalTurnover="9000000", delta="0.5", gamma="0.0001", vega="20", theta="-30",
        predictedDeliveryPrice="0", change24h="0.01")


def instrument_info(inst: Instrument, linear_info: dict[str, Any]) -> dict[str, Any]:
    """The instruments-info row of an inverse or option instrument."""
    if inst.category == "inverse":
        return {**linear_info, "contractType": "InversePerpetual", "quoteCoin": "USD",
                "settleCoin": inst.base}
    return {"symbol": inst.symbol, "status": inst.status, "baseCoin": inst.base,
            "quoteCoin": "USDC", "settleCoin": "USDC",
            "optionsType": "Call" if inst.symbol.endswith("-C") else "Put",
            "launchTime": "1672560000000", "deliveryTime": "1798272000000",
            "deliveryFeeRate": "0.00015",
            "priceFilter": {"minPrice": "5", "maxPrice": "10000000", "tickSize": "5"},
            "lotSizeFilter": {"maxOrderQty": "500", "minOrderQty": "0.01", "qtyStep": "0.01"}}


def instruments_of(category: str, items: list[Instrument], query: dict[str, str]
                   ) -> list[Instrument]:
    """Options without ``baseCoin``: BTC's alone (Bybit's default)."""
    if category == "option" and not query.get("baseCoin"):
        return [i for i in items if i.base == OPTION_DEFAULT_COIN]
    return items


def option_base_coins(items: list[Instrument]) -> dict[str, Any]:
    """/v5/market/option-base-coins: one row per base coin of the options, in listing
    order; ``hasSymbol`` 1 while one of its options trades."""
    rows: dict[str, dict[str, Any]] = {}
    for inst in items:
        row = rows.get(inst.base)
        if row is None:
            row = rows[inst.base] = {
                "baseCoin": inst.base, "quoteCoin": inst.quote, "settleCoin": inst.quote,
                "optionShowName": f"{inst.base}-Options", "optionOnlineTime": 1739952000000,
                "hasSymbol": 0, "underlyingType": 0}
        if inst.status == "Trading":
            row["hasSymbol"] = 1
    return {"list": list(rows.values())}


def trade_topic(inst: Instrument) -> str:
    """The topic a trade of ``inst`` is pushed on (options: per base coin)."""
    return f"publicTrade.{inst.base if inst.category == 'option' else inst.symbol}"


def option_trade_extras(inst: Instrument, trade: dict[str, Any]) -> None:
    """Bybit's option trade fields besides the common ones."""
    trade.update(iv="0.51", mIv="0.5", mP=trade["p"], iP="94000")


def topic_ok(markets: dict[str, dict[str, Instrument]], category: str, topic: str
             ) -> bool | None:
    """Whether ``topic`` exists in ``category``; None when the linear/spot rules decide."""
    kind, _, name = topic.partition(".")
    if category == "option" and kind == "publicTrade":
        return any(i.base == name and i.status == "Trading"
                   for i in markets["option"].values())
    if category in LINEAR_LIKE and kind == "allLiquidation":
        inst = markets[category].get(name)
        return inst is not None and inst.status == "Trading"
    return None


def option_ack(conn_id: str, req_id: Any, op: str, success: bool, args: list[str],
               failed: list[str]) -> dict[str, Any]:
    """Bybit's option reply to a (un)subscribe."""
    msg: dict[str, Any] = {"success": success, "conn_id": conn_id}
    if req_id is not None:
        msg["req_id"] = req_id
    msg["data"] = {"failTopics": failed, "successTopics": [a for a in args if a not in failed]}
    msg["type"] = "COMMAND_RESP"
    return msg


def option_pong() -> dict[str, Any]:
    return {"args": [str(now_ms())], "op": "pong"}


__all__ = [
    "LINEAR_LIKE",
    "instrument_info",
    "instruments_of",
    "option_ack",
    "option_base_coins",
    "option_pong",
    "option_trade_extras",
    "setup_instrument",
    "topic_ok",
    "trade_topic",
]
