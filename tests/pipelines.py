"""Pipeline TOML the tests share: the sections many of them need, written once.

The usual run against the Bybit simulator is ``bybit.linear`` named ``bybit`` (its URLs the
simulator's) into a ``testing.collect`` sink named ``out``; tests add their own sections
around these (a string each, joined in pipeline order).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def toml_list(items: Iterable[str]) -> str:
    """``["a", "b"]``: a TOML list of strings."""
    return "[" + ", ".join(f'"{s}"' for s in items) + "]"


def bybit_source(fake: Any, symbols: Iterable[str], *, streams: Iterable[str] = ("trades",),
                 extra: str = "") -> str:
    """``[[sources]]`` ``bybit``: bybit.linear on the simulator ``fake``; ``extra``: more
    lines of its options (TOML)."""
    return (f'[[sources]]\nname = "bybit"\ntype = "bybit.linear"\n'
            f"symbols = {toml_list(symbols)}\nstreams = {toml_list(streams)}\n"
            f'url = "{fake.ws_url("linear")}"\nrest_url = "{fake.rest_url}"\n{extra}\n')


def collect_sink(name: str = "out", inputs: Iterable[str] = ("bybit",)) -> str:
    """``[[sinks]]`` ``testing.collect`` named ``name``, fed by ``inputs``."""
    return f'\n[[sinks]]\nname = "{name}"\ntype = "testing.collect"\ninputs = {toml_list(inputs)}\n'


def bybit_into_collect(fake: Any, symbols: Iterable[str], *,
                       streams: Iterable[str] = ("trades",), extra: str = "") -> str:
    """bybit.linear on ``fake`` -> ``testing.collect`` ``out``."""
    return bybit_source(fake, symbols, streams=streams, extra=extra) + collect_sink()


#: ``[[transforms]]`` ``agg``: 1m klines from the ``bybit`` source's trades, waiter mode, no
#: flat klines for empty minutes.
KLINES_1M_WAITER = """
[[transforms]]
name = "agg"
type = "klines.from_trades"
inputs = ["bybit"]
intervals = ["1m"]
waiter = true
first_candle = "partial"
fill_gaps = false
"""


def klines_partial(name: str = "klines", *, intervals: Iterable[str] = ("1m",),
                   inputs: Iterable[str] = ("bybit",)) -> str:
    """``[[transforms]]`` ``klines.from_trades`` named ``name``: ``intervals`` from the trades
    of ``inputs``, the first candle partial (no REST backfill)."""
    return (f'\n[[transforms]]\nname = "{name}"\ntype = "klines.from_trades"\n'
            f"inputs = {toml_list(inputs)}\nintervals = {toml_list(intervals)}\n"
            'first_candle = "partial"\n')
