"""Client subscriptions: which channel / data type / symbols a client wants.

A subscription maps ``(channel, data_type)`` to a set of symbols, or to ``None`` for every
symbol. A client that never subscribed has no subscription at all and gets everything.
"""

from __future__ import annotations

import re
from typing import Any, get_args

from streamer import Channel, DataType

CHANNELS: tuple[str, ...] = get_args(Channel)
DATA_TYPES: tuple[str, ...] = get_args(DataType)
MAX_ARGS = 100
MAX_SYMBOLS = 2000
#: Exchange symbols are short ASCII names ("BTCUSDT", "BTC-26DEC25"); anything else is
#: refused, which also keeps an acknowledgement no larger than its request.
_SYMBOL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}")

Key = tuple[str, str]


class SubscriptionError(ValueError):
    """A malformed subscribe / unsubscribe request; the message goes back to the client."""


def parse_args(args: Any) -> list[dict[str, Any]]:
    """Validate ``args`` and return them normalised (symbols upper-cased, sorted)."""
    if not isinstance(args, list) or not args:
        raise SubscriptionError("'args' must be a non-empty list of objects")
    if len(args) > MAX_ARGS:
        raise SubscriptionError(f"at most {MAX_ARGS} args per request")
    normalised = []
    for arg in args:
        if not isinstance(arg, dict):
            raise SubscriptionError("each arg must be an object like "
                                    '{"channel": "linear", "data_type": "klines"}')
        unknown = set(arg) - {"channel", "data_type", "symbols"}
        if unknown:
            raise SubscriptionError(f"unknown arg keys: {', '.join(sorted(map(str, unknown)))}")
        out: dict[str, Any] = {}
        channel = arg.get("channel")
        if channel is not None:
            if channel not in CHANNELS:
                raise SubscriptionError(f"channel must be one of {', '.join(CHANNELS)}")
            out["channel"] = channel
        data_type = arg.get("data_type")
        if data_type is not None:
            if data_type not in DATA_TYPES:
                raise SubscriptionError(f"data_type must be one of {', '.join(DATA_TYPES)}")
            out["data_type"] = data_type
        symbols = arg.get("symbols")
        if symbols is not None:
            if (
                not isinstance(symbols, list)
                or not symbols
                or not all(isinstance(s, str) and s for s in symbols)
            ):
                raise SubscriptionError("symbols must be a non-empty list of strings")
            if len(symbols) > MAX_SYMBOLS:
                raise SubscriptionError(f"at most {MAX_SYMBOLS} symbols per arg")
            bad = next((s for s in symbols if not _SYMBOL.fullmatch(s)), None)
            if bad is not None:
                raise SubscriptionError(
                    f"bad symbol {bad[:40]!r}: 1-40 characters of A-Z 0-9 . _ -")
            out["symbols"] = sorted({s.upper() for s in symbols})
        normalised.append(out)
    return normalised


def _keys(arg: dict[str, Any]) -> list[Key]:
    channels = [arg["channel"]] if "channel" in arg else CHANNELS
    data_types = [arg["data_type"]] if "data_type" in arg else DATA_TYPES
    return [(c, d) for c in channels for d in data_types]


class Subscription:
    """What one client asked for: per ``(channel, data_type)`` a set of symbols or ``None``.

    Mutated in place, so a subscribe costs time proportional to its request, never to the set
    already held. ``size`` counts (key, symbol) entries, an "all symbols" key counting one;
    :meth:`subscribe` refuses to grow it past ``limit``. The frozen copy that the fan-out uses
    to share filtered envelopes between clients is rebuilt lazily, at most once per change
    and fan-out, never per request.
    """

    __slots__ = ("_frozen", "_symbols", "size")

    def __init__(self) -> None:
        self._symbols: dict[Key, set[str] | None] = {}
        self._frozen: dict[Key, frozenset[str]] = {}
        self.size = 0

    @classmethod
    def of(cls, args: list[dict[str, Any]]) -> Subscription:
        """The subscription ``args`` name on their own (no limit: used for snapshots)."""
        sub = cls()
        sub.subscribe(args, limit=None)
        return sub

    def __contains__(self, key: object) -> bool:
        return key in self._symbols

    def __len__(self) -> int:
        return len(self._symbols)

    def keys(self) -> list[Key]:
        return list(self._symbols)

    def symbols(self, key: Key) -> frozenset[str] | None:
        """The symbols of ``key`` (``None``: all); ``key`` must be subscribed."""
        current = self._symbols[key]
        if current is None:
            return None
        frozen = self._frozen.get(key)
        if frozen is None:
            frozen = self._frozen[key] = frozenset(current)
        return frozen

    def matches(self, channel: str, data_type: str, symbol: str) -> bool:
        key = (channel, data_type)
        if key not in self._symbols:
            return False
        symbols = self._symbols[key]
        return symbols is None or symbol in symbols

    def _growth(self, args: list[dict[str, Any]]) -> int:
        """Entries ``args`` would add, an upper bound computed in O(request)."""
        growth = 0
        for arg in args:
            for key in _keys(arg):
                if key not in self._symbols:
                    growth += len(arg["symbols"]) if "symbols" in arg else 1
                    continue
                held = self._symbols[key]
                if held is not None:
                    growth += sum(s not in held for s in arg.get("symbols", ()))
        return growth

    def subscribe(self, args: list[dict[str, Any]], limit: int | None) -> None:
        """Add what ``args`` name; refuse (unchanged) if the set would grow past ``limit``."""
        if limit is not None:
            growth = self._growth(args)
            if self.size + growth > limit:
                raise SubscriptionError(
                    f"subscription limit reached: {self.size} entries held, this request "
                    f"adds up to {growth}, at most {limit} per client"
                )
        table = self._symbols
        for arg in args:
            symbols = arg.get("symbols")
            for key in _keys(arg):
                self._frozen.pop(key, None)
                if key not in table:
                    table[key] = None if symbols is None else set(symbols)
                    self.size += 1 if symbols is None else len(symbols)
                    continue
                held = table[key]
                if held is None:
                    continue
                if symbols is None:
                    self.size -= len(held) - 1
                    table[key] = None
                    continue
                before = len(held)
                held.update(symbols)
                self.size += len(held) - before

    def check_unsubscribe(self, args: list[dict[str, Any]]) -> None:
        for arg in args:
            if "symbols" not in arg:
                continue
            for key in _keys(arg):
                if key in self._symbols and self._symbols[key] is None:
                    raise SubscriptionError(
                        f"cannot unsubscribe single symbols from all symbols of {key[0]} "
                        f"{key[1]}: unsubscribe that channel and data_type, then subscribe "
                        "the symbols wanted"
                    )

    def unsubscribe(self, args: list[dict[str, Any]]) -> None:
        """Remove what ``args`` name (all or nothing). Empty means: receive nothing."""
        self.check_unsubscribe(args)
        table = self._symbols
        for arg in args:
            for key in _keys(arg):
                if key not in table:
                    continue
                self._frozen.pop(key, None)
                held = table[key]
                if "symbols" not in arg:
                    del table[key]
                    self.size -= 1 if held is None else len(held)
                    continue
                assert held is not None
                before = len(held)
                held.difference_update(arg["symbols"])
                self.size -= before - len(held)
                if not held:
                    del table[key]


def everything() -> Subscription:
    """The subscription of a client that never subscribed."""
    return Subscription.of([{}])


def matches(sub: Subscription | None, channel: str, data_type: str, symbol: str) -> bool:
    return sub is None or sub.matches(channel, data_type, symbol)
