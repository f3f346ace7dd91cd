"""pytest fixtures: ``fake_bybit`` yields a started Bybit simulator (plain ws://, http://).

The simulator is ``streamer_bybit.simulator`` (the Bybit plugin); it is imported when the
fixture runs, so the suites of the other plugins load without the Bybit plugin installed
(scripts/check-packaging tests each plugin alone).
"""

from __future__ import annotations

import pytest
import trio

LINEAR_SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "1000PEPEUSDT", "DOGEUSDT",
                  "BNBUSDT", "ADAUSDT"]
SPOT_SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"]


@pytest.fixture
async def fake_bybit():
    from streamer_bybit.simulator import FakeBybit

    fake = FakeBybit(linear_symbols=LINEAR_SYMBOLS, spot_symbols=SPOT_SYMBOLS, seed=1)
    async with trio.open_nursery() as nursery:
        await nursery.start(fake.serve)
        yield fake
        fake.stop()
        nursery.cancel_scope.cancel()
