"""pytest fixtures: ``fake_bybit`` yields a started FakeBybit (plain ws://, http://)."""

from __future__ import annotations

import pytest
import trio

from streamer_bybit.simulator import FakeBybit

LINEAR_SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "1000PEPEUSDT", "DOGEUSDT",
                  "BNBUSDT", "ADAUSDT"]
SPOT_SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"]


@pytest.fixture
async def fake_bybit():
    fake = FakeBybit(linear_symbols=LINEAR_SYMBOLS, spot_symbols=SPOT_SYMBOLS, seed=1)
    async with trio.open_nursery() as nursery:
        await nursery.start(fake.serve)
        yield fake
        fake.stop()
        nursery.cancel_scope.cancel()
