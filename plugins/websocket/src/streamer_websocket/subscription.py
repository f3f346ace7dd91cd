"""Client subscriptions: which channel / data type / symbols a client wants.

A subscription maps ``(channel, data_type)`` to a frozenset of symbols, or to ``None`` for
every symbol. A client that never subscribed has no subscription at all and gets everything.
"""

from __future__ import annotations

from typing import Any, get_args

from streamer.events import Channel, DataType

CHANNELS: tuple[str, ...] = get_args(Channel)
DATA_TYPES: tuple[str, ...] = get_args(DataType)
MAX_ARGS = 100
MAX_SYMBOLS = 2000

Key = tuple[str, str]
Subscription = dict[Key, "frozenset[str] | None"]


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
            out["symbols"] = sorted({s.upper() for s in symbols})
        normalised.append(out)
    return normalised


def _keys(arg: dict[str, Any]) -> list[Key]:
    channels = [arg["channel"]] if "channel" in arg else CHANNELS
    data_types = [arg["data_type"]] if "data_type" in arg else DATA_TYPES
    return [(c, d) for c in channels for d in data_types]


def everything() -> Subscription:
    return {(c, d): None for c in CHANNELS for d in DATA_TYPES}


def subscribe(current: Subscription | None, args: list[dict[str, Any]]) -> Subscription:
    """The first subscribe narrows "everything" to what was asked; later ones add to it."""
    result: Subscription = {} if current is None else dict(current)
    for arg in args:
        symbols = frozenset(arg["symbols"]) if "symbols" in arg else None
        for key in _keys(arg):
            if key in result:
                old = result[key]
                result[key] = None if old is None or symbols is None else old | symbols
            else:
                result[key] = symbols
    return result


def unsubscribe(current: Subscription | None, args: list[dict[str, Any]]) -> Subscription:
    """Remove what ``args`` name. An empty result means the client receives nothing."""
    result = everything() if current is None else dict(current)
    for arg in args:
        for key in _keys(arg):
            if key not in result:
                continue
            if "symbols" not in arg:
                del result[key]
                continue
            old = result[key]
            if old is None:
                raise SubscriptionError(
                    f"cannot unsubscribe single symbols from all symbols of {key[0]} {key[1]}: "
                    "unsubscribe that channel and data_type, then subscribe the symbols wanted"
                )
            remaining = old - set(arg["symbols"])
            if remaining:
                result[key] = remaining
            else:
                del result[key]
    return result


def matches(sub: Subscription | None, channel: str, data_type: str, symbol: str) -> bool:
    if sub is None:
        return True
    key = (channel, data_type)
    if key not in sub:
        return False
    symbols = sub[key]
    return symbols is None or symbol in symbols
