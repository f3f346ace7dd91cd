"""The ``nats`` sink end to end: fake Bybit -> `streamer run` (subprocesses) -> a real
nats-server; every trade the fake sent is in the stream exactly once."""

from __future__ import annotations

from pathlib import Path

from nats_helpers import (
    SYMBOLS,
    final_metrics,
    messages,
    replica_config,
    sent_trade_ids,
    start_replica,
    stop_replica,
    trade_ids,
    wait_stream_count,
)

MESSAGES = 2_000
RATE = 2_000.0


async def test_every_trade_in_the_stream_exactly_once(tmp_path: Path, fake_bybit,
                                                      nats_server):
    config = replica_config(tmp_path / "a.toml", fake_bybit, [nats_server.url])
    log = tmp_path / "a.log"
    proc = await start_replica(config, log)
    try:
        await fake_bybit.run_market("linear", SYMBOLS, rate=RATE, count=MESSAGES,
                                    tickers=False)
        sent = sent_trade_ids(fake_bybit)
        assert len(sent) == MESSAGES
        seen = await wait_stream_count(nats_server.url, len(sent))
        assert seen == len(sent)
    finally:
        rc = await stop_replica(proc)
    assert rc == 0, log.read_text()[-3000:]
    ids = trade_ids(await messages(nats_server.url))
    assert sorted(ids) == sorted(sent)
    assert set(ids.values()) == {1}
    metrics = final_metrics(log, "nats")
    assert metrics.get("published") == len(sent), metrics
    assert "failed" not in metrics
