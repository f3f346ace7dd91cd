"""Client subscriptions: which channel / data type / symbols a client wants.

A subscription maps ``(channel, data_type)`` to a set of symbols, or to ``None`` for every
symbol. A client that never subscribed has no subscription at all and gets everything.

Channels are the sources' own names (``"linear"``, ``"spot"``, another exchange's
``"futures"``): the sink does not know them in advance, so an arg without ``channel`` is
held once per data type under :data:`ANY_CHANNEL` and matches every channel, including ones
that appear later. Unsubscribing one channel from it carves that channel out (at most
:data:`MAX_CARVED` channels per data type), so the result is what naming every channel
would give.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from typing import Any, get_args

from streamer import DataType
from streamer.validators import channel_problem

DATA_TYPES: tuple[str, ...] = get_args(DataType)
MAX_ARGS = 100
MAX_SYMBOLS = 2000
#: Channels one client may carve out of an all-channels subscription, per data type.
MAX_CARVED = 100
#: Entries (and carved channels) a subscription may hold and still have a
#: :meth:`~Subscription.signature`: clients of equal small subscriptions (a web view's few
#: keys) share what the batching tick selects for them; a larger one is selected for on its
#: own, so a client changing a large subscription often never costs a rebuild of its
#: signature per tick.
MAX_SIGNATURE_ENTRIES = 64
#: The channel part of a key that holds an arg without ``channel``: not a channel name
#: (:data:`streamer.validators.CHANNEL_NAME`), so it never meets a real one.
ANY_CHANNEL = "*"
#: Exchange symbols are short ASCII names ("BTCUSDT", "BTC-26DEC25"); anything else is
#: refused, which also keeps an acknowledgement no larger than its request.
_SYMBOL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}")
#: Field names one subscribe arg may name (``"fields"``), and the characters of each.
MAX_FIELDS = 32
MAX_FIELD_CHARS = 64
_FIELD = re.compile(rf"[A-Za-z0-9_]{{1,{MAX_FIELD_CHARS}}}")
FIELDS_NEED_A_DATA_TYPE = ("fields need a data_type other than book (a book's items "
                           "must stay whole to keep the book)")
#: Keys every projected item keeps: which symbol (``symbol``, a trade's ``s``), which candle
#: (``interval``, ``timestamp``) and when (``ts``, a trade's ``T``).
IDENTITY_FIELDS = frozenset({"symbol", "s", "ts", "T", "interval", "timestamp"})

Key = tuple[str, str]
#: A signature not built since the last change.
_STALE: Hashable = object()


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
        unknown = set(arg) - {"channel", "data_type", "symbols", "fields"}
        if unknown:
            raise SubscriptionError(f"unknown arg keys: {', '.join(sorted(map(str, unknown)))}")
        out: dict[str, Any] = {}
        channel = arg.get("channel")
        if channel is not None:
            problem = channel_problem(channel)
            if problem is not None:
                raise SubscriptionError(f"channel: {problem}")
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
        fields = arg.get("fields")
        if fields is not None:
            if (
                not isinstance(fields, list)
                or not fields
                or len(fields) > MAX_FIELDS
                or not all(isinstance(f, str) and _FIELD.fullmatch(f) for f in fields)
            ):
                raise SubscriptionError(
                    f"fields must be a non-empty list of at most {MAX_FIELDS} names, each "
                    f"1-{MAX_FIELD_CHARS} characters of A-Z a-z 0-9 _")
            if out.get("data_type") in (None, "book"):
                # A book cut to some keys can no longer be kept whole (its levels, u, seq).
                raise SubscriptionError(FIELDS_NEED_A_DATA_TYPE)
            out["fields"] = sorted(set(fields))
        normalised.append(out)
    return normalised


def _keys(arg: dict[str, Any]) -> list[Key]:
    channel = arg.get("channel", ANY_CHANNEL)
    data_types = [arg["data_type"]] if "data_type" in arg else DATA_TYPES
    return [(channel, d) for d in data_types]


class Subscription:
    """What one client asked for: per ``(channel, data_type)`` a set of symbols or ``None``.

    A key's channel is a channel name or :data:`ANY_CHANNEL` (an arg without ``channel``);
    a concrete ``(channel, data_type)`` selects the union of its own entry and, unless that
    channel was carved out of it (``_carved``), the data type's any-channel entry.

    Mutated in place, so a subscribe costs time proportional to its request (and to the
    channels carved out), never to the symbols already held. ``size`` counts (key, symbol)
    entries, an "all symbols" key counting one; :meth:`subscribe` refuses to grow it past
    ``limit``. The frozen sets the fan-out uses to share filtered envelopes between clients
    are rebuilt lazily, at most once per change and fan-out, never per request.

    ``fields`` projects the items of a data type: data_type -> the keys its items keep (the
    names subscribed with ``"fields"`` and :data:`IDENTITY_FIELDS`); a data type not in it
    keeps every key. Fields belong to the data type (every channel and symbol of it the
    client holds), and add up as symbols do: a subscribe that names other fields adds them,
    one that names none gives every field; they are forgotten when the data type's last
    entry is unsubscribed.
    """

    __slots__ = ("_carved", "_frozen", "_signature", "_symbols", "_types", "fields", "size")

    def __init__(self) -> None:
        self._symbols: dict[Key, set[str] | None] = {}
        #: data_type -> channels taken out of its any-channel entry.
        self._carved: dict[str, set[str]] = {}
        self._frozen: dict[Key, frozenset[str] | None] = {}
        self._signature: Hashable | None = _STALE
        self.size = 0
        #: data_type -> keys held of it (its fields are dropped with its last key).
        self._types: dict[str, int] = {}
        self.fields: dict[str, frozenset[str]] = {}

    @classmethod
    def of(cls, args: list[dict[str, Any]]) -> Subscription:
        """The subscription ``args`` name on their own (no limit: used for snapshots)."""
        sub = cls()
        sub.subscribe(args, limit=None)
        return sub

    def _any(self, key: Key) -> bool:
        """Whether the any-channel entry of ``key``'s data type covers ``key``'s channel."""
        channel, data_type = key
        return ((ANY_CHANNEL, data_type) in self._symbols
                and channel not in self._carved.get(data_type, ()))

    def __contains__(self, key: object) -> bool:
        return key in self._symbols or self._any(key)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self._symbols)

    def keys(self) -> list[Key]:
        return list(self._symbols)

    def symbols(self, key: Key) -> frozenset[str] | None:
        """The symbols of ``key`` (``None``: all); ``key`` must be selected (``in``)."""
        if key in self._frozen:
            return self._frozen[key]
        table = self._symbols
        held = [table[k] for k in (key, (ANY_CHANNEL, key[1]))
                if k in table and (k == key or self._any(key))]
        frozen = (None if any(h is None for h in held)
                  else frozenset().union(*held))  # type: ignore[arg-type]
        self._frozen[key] = frozen
        return frozen

    def signature(self) -> Hashable | None:
        """A value equal for subscriptions that select the same (what they hold: the
        entries and the carved channels), or None past :data:`MAX_SIGNATURE_ENTRIES`.
        Built at most once per change."""
        if self._signature is _STALE:
            carved = sum(len(channels) for channels in self._carved.values())
            if self.size + carved > MAX_SIGNATURE_ENTRIES:
                self._signature = None
            else:
                self._signature = (
                    frozenset((key, None if held is None else frozenset(held))
                              for key, held in self._symbols.items()),
                    frozenset((data_type, frozenset(channels))
                              for data_type, channels in self._carved.items()),
                    frozenset(self.fields.items()))
        return self._signature

    def matches(self, channel: str, data_type: str, symbol: str) -> bool:
        key = (channel, data_type)
        if key not in self:
            return False
        symbols = self.symbols(key)
        return symbols is None or symbol in symbols

    def _growth(self, args: list[dict[str, Any]]) -> int:
        """Entries ``args`` would add, an upper bound computed in O(request)."""
        growth = 0
        for arg in args:
            for key in _keys(arg):
                carved = len(self._carved.get(key[1], ())) if key[0] == ANY_CHANNEL else 0
                if key not in self._symbols:
                    growth += (len(arg["symbols"]) if "symbols" in arg else 1) * (1 + carved)
                    continue
                held = self._symbols[key]
                if held is not None:
                    growth += sum(s not in held for s in arg.get("symbols", ())) * (1 + carved)
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
        self._frozen.clear()
        self._signature = _STALE
        for arg in args:
            symbols = arg.get("symbols")
            for key in _keys(arg):
                self._add_fields(key[1], arg.get("fields"))
                self._add(key, symbols)
                if key[0] == ANY_CHANNEL:
                    # A carved-out channel is every channel too: it gets the symbols itself.
                    for channel in self._carved.get(key[1], ()):
                        self._add((channel, key[1]), symbols)

    def _add_fields(self, data_type: str, fields: list[str] | None) -> None:
        """Fields a subscribe of ``data_type`` adds (before its keys are added)."""
        if not self._types.get(data_type):
            if fields is not None:  # the first entry of the data type sets them
                self.fields[data_type] = IDENTITY_FIELDS.union(fields)
            return
        held = self.fields.get(data_type)
        if held is None:
            return  # every field already
        if fields is None:
            del self.fields[data_type]
        else:
            self.fields[data_type] = held.union(fields)

    def _add(self, key: Key, symbols: list[str] | None) -> None:
        table = self._symbols
        if key not in table:
            self._types[key[1]] = self._types.get(key[1], 0) + 1
            table[key] = None if symbols is None else set(symbols)
            self.size += 1 if symbols is None else len(symbols)
            return
        held = table[key]
        if held is None:
            return
        if symbols is None:
            self.size -= len(held) - 1
            table[key] = None
            return
        before = len(held)
        held.update(symbols)
        self.size += len(held) - before

    def _drop(self, key: Key, symbols: list[str] | None) -> None:
        table = self._symbols
        if key not in table:
            return
        held = table[key]
        if symbols is None:
            self._forget(key)
            self.size -= 1 if held is None else len(held)
            return
        assert held is not None
        before = len(held)
        held.difference_update(symbols)
        self.size -= before - len(held)
        if not held:
            self._forget(key)

    def _forget(self, key: Key) -> None:
        del self._symbols[key]
        left = self._types[key[1]] - 1
        if left:
            self._types[key[1]] = left
        else:
            del self._types[key[1]]
            self.fields.pop(key[1], None)

    def check_unsubscribe(self, args: list[dict[str, Any]]) -> None:
        carving: dict[str, set[str]] = {}
        for arg in args:
            if "fields" in arg:
                raise SubscriptionError(
                    "fields are named by subscribe only: unsubscribe the data type, then "
                    "subscribe it with the fields wanted")
            for key in _keys(arg):
                channel, data_type = key
                if channel == ANY_CHANNEL:
                    covered = [k for k in self._symbols if k[1] == data_type]
                else:
                    covered = [k for k in (key, (ANY_CHANNEL, data_type))
                               if k in self._symbols and (k == key or self._any(key))]
                    if self._any(key):
                        carving.setdefault(data_type, set()).add(channel)
                if "symbols" not in arg:
                    continue
                for k in covered:
                    if self._symbols[k] is None:
                        raise SubscriptionError(
                            f"cannot unsubscribe single symbols from all symbols of "
                            f"{'every channel' if k[0] == ANY_CHANNEL else k[0]} {k[1]}: "
                            "unsubscribe that channel and data_type, then subscribe the "
                            "symbols wanted"
                        )
        for data_type, channels in carving.items():
            if len(self._carved.get(data_type, set()) | channels) > MAX_CARVED:
                raise SubscriptionError(
                    f"at most {MAX_CARVED} channels can be unsubscribed from a subscription "
                    f"to every channel ({data_type}): unsubscribe {data_type}, then "
                    "subscribe the channels wanted"
                )

    def unsubscribe(self, args: list[dict[str, Any]]) -> None:
        """Remove what ``args`` name (all or nothing). Empty means: receive nothing."""
        self.check_unsubscribe(args)
        self._frozen.clear()
        self._signature = _STALE
        table = self._symbols
        for arg in args:
            symbols = arg.get("symbols")
            for key in _keys(arg):
                channel, data_type = key
                if channel == ANY_CHANNEL:
                    for k in [k for k in table if k[1] == data_type]:
                        self._drop(k, symbols)
                    if symbols is None:
                        self._carved.pop(data_type, None)
                    continue
                if self._any(key):
                    # Carve the channel out of "every channel", keeping the rest of what it
                    # had from there: as if every channel had been named one by one.
                    if symbols is not None:
                        wild = table[(ANY_CHANNEL, data_type)]
                        assert wild is not None  # check_unsubscribe refused that
                        self._add(key, sorted(wild))
                    self._carved.setdefault(data_type, set()).add(channel)
                self._drop(key, symbols)
            for data_type in list(self._carved):
                if (ANY_CHANNEL, data_type) not in table:
                    del self._carved[data_type]  # nothing left to carve from


def everything() -> Subscription:
    """The subscription of a client that never subscribed."""
    return Subscription.of([{}])


def matches(sub: Subscription | None, channel: str, data_type: str, symbol: str) -> bool:
    return sub is None or sub.matches(channel, data_type, symbol)
