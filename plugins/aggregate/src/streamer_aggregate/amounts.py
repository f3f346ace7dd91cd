"""Exact volume and turnover: trade sizes and prices summed as integers, not floats.

Summing ``float(size)`` leaves float noise on the wire (``97.04799999999999`` for 97.048).
Instead sizes are counted in integer *units* of ``10 ** -size_decimals`` (the most decimals
any size had so far) and turnovers in units of ``10 ** -(size_decimals + price_decimals)``:
Python ints, so sums are exact whatever their size. A size or price with more decimals than
seen before widens the scale (multiplies the open candles' sums) once.

A kline's volume is then ``units / 10 ** decimals``, the float nearest the exact decimal sum;
its shortest repr (what every sink writes) is that decimal whenever it has at most 15
significant digits, float's own limit.

Parsing a decimal string costs more than ``float()``, a dict lookup less: :class:`Amounts`
keeps the units of the strings seen last (at most :data:`CACHE_ENTRIES` each for sizes and
prices, then that cache starts over), and most trades repeat a recent size and price.

A price needs no lookup at all when its float tells its units exactly (the aggregator's hot
path, with :attr:`Amounts.price_scale_float`): for ``s`` of at most 15 characters (so at most
15 significant digits) and ``N = round(float(s) * 10 ** d)`` below ``10 ** 15``, if
``N / 10 ** d == float(s)`` (int / int is correctly rounded) then ``s`` is exactly
``N * 10 ** -d``: two decimals of at most 15 significant digits that read as the same double
are the same decimal (DBL_DIG). Anything else (more decimals than ``d``, longer strings,
NaN, signs) goes through the cache and the parser as before. A big price dict is a few
cache misses per trade once the rest of a socket read has gone through the CPU caches; the
float is already there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal, InvalidOperation
from typing import Protocol

#: Distinct size strings (and, apart, price strings) whose units are kept: about 3 MiB each.
CACHE_ENTRIES = 16_384
_INF = float("inf")


def parse_decimal(text: str) -> tuple[int, int]:
    """``(units, decimals)`` with ``units * 10 ** -decimals`` equal to the non-negative
    decimal ``text`` exactly. Raises :class:`ValueError` for anything else."""
    dot = text.find(".")
    if dot < 0:
        digits, decimals = text, 0
    else:
        digits, decimals = text[:dot] + text[dot + 1:], len(text) - dot - 1
    if digits.isascii() and digits.isdigit():
        return int(digits), decimals
    # Rare forms ("1e-05", "+2"): Decimal reads them exactly.
    try:
        value = Decimal(text) if text.isascii() else Decimal("NaN")
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite() or value.is_signed():
        raise ValueError(f"not a non-negative decimal number: {text!r}")
    _, digit_tuple, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite
    units = int("".join(map(str, digit_tuple)) or "0")
    if exponent >= 0:
        return units * 10**exponent, 0
    return units, -exponent


def _positive(text: str) -> tuple[int, int]:
    """:func:`parse_decimal` of a trade's size or price, which must be more than 0 and within
    a float's range (``1e999`` is a decimal, but its volume or price would be infinite)."""
    units, decimals = parse_decimal(text)
    if units == 0 or float(text) == _INF:
        raise ValueError(f"{text!r:.40} is not a positive finite number")
    return units, decimals


def float_decimal(value: float) -> tuple[int, int]:
    """The decimal a float reads as (its shortest repr), as :func:`parse_decimal`: for
    amounts that came in as floats (a source's candles) and meet exact ones."""
    return parse_decimal(repr(float(value)))



class Sums(Protocol):
    """An open candle's sums, in units of the scales."""

    volume: int
    turnover: int


class Amounts:
    """The scales of every volume and turnover of one aggregator, and the units of the
    size and price strings seen last. ``candles`` yields every open candle (to widen)."""

    __slots__ = ("candles", "price_decimals", "price_scale", "price_scale_float", "prices",
                 "size_decimals", "sizes", "turnover", "turnover_scale", "volume_scale")

    def __init__(self, candles: Callable[[], Iterable[Sums]], turnover: bool) -> None:
        self.candles = candles
        #: Whether klines carry a turnover.
        self.turnover = turnover
        self.size_decimals = self.price_decimals = 0
        self.volume_scale = self.turnover_scale = self.price_scale = 1
        #: ``float(price_scale)``, or 0.0 past 15 decimals (no exact shortcut: module doc).
        self.price_scale_float = 1.0
        #: size string -> its units at ``size_decimals``
        self.sizes: dict[str, int] = {}
        #: price string -> its units at ``price_decimals``
        self.prices: dict[str, int] = {}

    def size_units(self, text: str) -> int:
        """Units of the size ``text`` (widening the scale if it has more decimals); cached.
        Raises :class:`ValueError` unless it is a positive finite number."""
        units, decimals = _positive(text)
        if decimals > self.size_decimals:
            self.widen(decimals, self.price_decimals)
        units *= 10 ** (self.size_decimals - decimals)
        sizes = self.sizes
        if len(sizes) >= CACHE_ENTRIES:
            sizes.clear()
        sizes[text] = units
        return units

    def price_units(self, text: str) -> int:
        """The units of the price ``text``, as :meth:`size_units` (its float is
        ``float(text)``)."""
        units, decimals = _positive(text)
        if decimals > self.price_decimals:
            self.widen(self.size_decimals, decimals)
        units *= self.price_scale // 10**decimals
        prices = self.prices
        if len(prices) >= CACHE_ENTRIES:
            prices.clear()
        prices[text] = units
        return units

    def volume_units(self, value: float | str) -> int:
        """Units of a volume that came as a float (a source's candle) or a decimal string
        (a stored sum)."""
        units, decimals = parse_decimal(value) if isinstance(value, str) else float_decimal(value)
        if decimals > self.size_decimals:
            self.widen(decimals, self.price_decimals)
        return units * 10 ** (self.size_decimals - decimals)

    def turnover_units(self, value: float | str) -> int:
        """Units of a turnover, as :meth:`volume_units`."""
        units, decimals = parse_decimal(value) if isinstance(value, str) else float_decimal(value)
        extra = decimals - self.size_decimals - self.price_decimals
        if extra > 0:
            self.widen(self.size_decimals, self.price_decimals + extra)
        return units * 10 ** (self.size_decimals + self.price_decimals - decimals)

    def widen(self, size_decimals: int, price_decimals: int) -> None:
        """Count in finer units from now on: the open candles' sums are multiplied up."""
        size_factor = 10 ** (size_decimals - self.size_decimals)
        turnover_factor = size_factor * 10 ** (price_decimals - self.price_decimals)
        for b in self.candles():
            b.volume *= size_factor
            b.turnover *= turnover_factor
        self.size_decimals = size_decimals
        self.price_decimals = price_decimals
        self.volume_scale = 10**size_decimals
        self.price_scale = 10**price_decimals
        self.price_scale_float = float(self.price_scale) if price_decimals <= 15 else 0.0
        self.turnover_scale = 10 ** (size_decimals + price_decimals)
        # Cached units are at the old scale.
        if size_factor != 1:
            self.sizes.clear()
        if turnover_factor != size_factor:
            self.prices.clear()
