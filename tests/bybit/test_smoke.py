from __future__ import annotations

import trio
from bybit.harness import make_source
from streamer.events import Trade


async def test_smoke(fake_bybit, collector):
    source = make_source(fake_bybit, symbols=["BTCUSDT"], streams=["trades"])
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(source.run, collector)
            fake_bybit.trade("linear", "BTCUSDT", count=3)
            await collector.wait_for(lambda ev: len(ev) >= 3)
            nursery.cancel_scope.cancel()
    assert all(isinstance(e, Trade) for e in collector.events)
