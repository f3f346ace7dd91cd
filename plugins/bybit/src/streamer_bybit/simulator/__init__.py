"""A faithful in-process fake of Bybit's V5 public WebSocket + REST market API (trio).

    from streamer_bybit.simulator import FakeBybit
    fake = FakeBybit(linear_symbols=[...], spot_symbols=[...], seed=1)
    port = await nursery.start(fake.serve)

See ``streamer_bybit.simulator.server`` for the behaviour, the choices the fake makes and
the modules it is made of.
"""

from .connection import Connection, ws_frame
from .market import INTERVALS, period_end, period_start
from .server import FakeBybit
from .tls import make_self_signed, make_ssl_contexts

__all__ = [
    "INTERVALS",
    "Connection",
    "FakeBybit",
    "make_self_signed",
    "make_ssl_contexts",
    "period_end",
    "period_start",
    "ws_frame",
]
