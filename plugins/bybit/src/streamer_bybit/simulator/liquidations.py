"""The simulator's ``allLiquidation.<SYMBOL>`` topic (linear, inverse).

:func:`liquidate` makes liquidations of one symbol, logs them (``log``: what a test compares
the source's events with) and pushes them in one message, as Bybit's 500 ms batches. A new
subscribe to the topic is first pushed the symbol's last :data:`REPLAYED` liquidations
again (:func:`on_subscribe`), as a resubscribe to Bybit may repeat what came before the
loss: a client must drop what it already has.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

import msgspec

from streamer.clock import now_ms

from .connection import ws_frame

if TYPE_CHECKING:
    from .connection import Connection
    from .server import FakeBybit
    from .state import FakeState

#: Liquidations pushed again to a new subscriber of the symbol's topic.
REPLAYED: Final = 3


def log(fake: FakeState) -> list[tuple[str, dict[str, Any]]]:
    """Every liquidation made so far, in order, with its category."""
    return fake.liquidations


def liquidate(fake: FakeBybit, category: str, symbol: str, *, count: int = 1,
              side: str = "Sell", size: str = "0.003", price: str = "94000",
              ts: int | None = None) -> list[dict[str, Any]]:
    """``count`` liquidations of ``symbol`` (sizes ``size`` + k steps, so each differs),
    pushed in one message; returns them."""
    fake._inst(category, symbol)  # KeyError for an unknown symbol
    at = now_ms() if ts is None else ts
    first = Decimal(size)
    step = Decimal(1).scaleb(first.as_tuple().exponent)  # type: ignore[arg-type]
    made = [{"T": at, "s": symbol, "S": side, "v": str(first + k * step), "p": price}
            for k in range(count)]
    log(fake).extend((category, m) for m in made)
    topic = f"allLiquidation.{symbol}"
    fake._publish(category, topic, {"topic": topic, "type": "snapshot", "ts": at,
                                    "data": made})
    return made


def on_subscribe(fake: FakeState, conn: Connection, topic: str) -> None:
    """A new subscriber of ``topic`` gets the symbol's last liquidations again."""
    symbol = topic.partition(".")[2]
    last = [m for cat, m in log(fake) if cat == conn.category and m["s"] == symbol]
    if last:
        conn.enqueue(fake_frame({"topic": topic, "type": "snapshot", "ts": now_ms(),
                                  "data": last[-REPLAYED:]}))


def fake_frame(payload: dict[str, Any]) -> bytes:
    return ws_frame(msgspec.json.encode(payload))


__all__ = ["REPLAYED", "liquidate", "log", "on_subscribe"]
