"""Active-active replicas and broker faults: two `streamer run` processes with the same shard
publish the same events into one stream; JetStream's de-duplication by ``Nats-Msg-Id``
keeps each once. Each test is bounded: a fixed number of fake Bybit messages at a fixed
rate, and every wait has a timeout."""

from __future__ import annotations

from pathlib import Path

import trio
from bybit_simulator import LINEAR_SYMBOLS
from nats_helpers import (
    closed_kline_keys,
    final_metrics,
    kill_replica,
    messages,
    replica_config,
    sent_trade_ids,
    start_replica,
    stop_replica,
    trade_ids,
    wait_stats,
    wait_stream_count,
    wait_stream_trades,
)
from nats_server import stream_info

from streamer_bybit.shard import shard_symbols

SHARD = "1/2"
MINE = shard_symbols(LINEAR_SYMBOLS, SHARD)
RATE = 1_000.0


async def _market(fake, count: int) -> None:
    await fake.run_market("linear", LINEAR_SYMBOLS, rate=RATE, count=count, tickers=False)


def _assert_exactly_once(msgs, sent: list[str]) -> None:
    ids = trade_ids(msgs)
    doubled = {i: n for i, n in ids.items() if n > 1}
    assert not doubled, f"{len(doubled)} trades stored more than once"
    missing = set(sent) - set(ids)
    assert not missing, f"{len(missing)} of {len(sent)} trades missing"
    assert set(ids) == set(sent)
    keys = closed_kline_keys(msgs)
    assert all(n == 1 for n in keys.values()), keys


async def test_two_replicas_same_shard_each_trade_once_and_sigkill_one(
        tmp_path: Path, fake_bybit, nats_server):
    assert 0 < len(MINE) < len(LINEAR_SYMBOLS)
    procs, logs = [], []
    for name in ("a", "b"):
        config = replica_config(tmp_path / f"{name}.toml", fake_bybit, [nats_server.url],
                                symbols=LINEAR_SYMBOLS, klines=True,
                                source_extra=f'shard = "{SHARD}"',
                                streamer_extra="stats_interval = 0.2")
        logs.append(tmp_path / f"{name}.log")
        procs.append(await start_replica(config, logs[-1]))
    try:
        await _market(fake_bybit, 2_000)
        first = len(sent_trade_ids(fake_bybit, MINE))
        # Both replicas are past the first half by their own counters (events acked by NATS,
        # stored or found stored, at least as many as its trades): the survivor then meets
        # what the killed one stored.
        for proc, log in zip(procs, logs, strict=True):
            await wait_stats(log, "nats", proc,
                             lambda m: m.get("published", 0) + m.get("duplicates", 0) >= first)
        kill_replica(procs[0])  # SIGKILL mid-stream: no flush, no goodbye
        await _market(fake_bybit, 2_000)
        sent = sent_trade_ids(fake_bybit, MINE)
        # 4,000 messages of one trade, round-robin over the 8 symbols; 5 are in the shard
        assert len(MINE) == 5 and len(sent) == 4_000 // 8 * 5
        # Every trade stored before the survivor is stopped (its SIGTERM ends its reading);
        # anything doubled would be in the stream once the replicas are stopped (below).
        await wait_stream_trades(nats_server.url, sent)
    finally:
        for proc in procs:
            rc = await stop_replica(proc) if proc.poll() is None else None
        assert rc == 0, logs[1].read_text()[-3000:]
    msgs = await messages(nats_server.url)
    _assert_exactly_once([m for m in msgs if m.subject.split(".")[2] == "trades"] +
                         [m for m in msgs if m.subject.split(".")[2] == "klines"], sent)
    assert {m.subject.rsplit(".", 1)[1] for m in msgs} <= set(MINE)  # only the shard's
    survivor = final_metrics(logs[1], "nats")
    # The survivor published the second half alone and met the killed replica's copies in
    # the first: every message of the stream is one the survivor stored or found stored.
    assert survivor.get("duplicates", 0) > 0, survivor
    assert survivor.get("published", 0) + survivor.get("duplicates", 0) == len(msgs), survivor
    assert "failed" not in survivor


async def test_server_killed_and_restarted_mid_run_nothing_acked_lost(
        tmp_path: Path, fake_bybit, nats_server):
    config = replica_config(tmp_path / "a.toml", fake_bybit, [nats_server.url],
                            symbols=LINEAR_SYMBOLS)
    log = tmp_path / "a.log"
    proc = await start_replica(config, log)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_market, fake_bybit, 3_000)
            await wait_stream_count(nats_server.url, 1)  # the sink is publishing
            await trio.to_thread.run_sync(nats_server.kill)  # crash, store kept
            await trio.sleep(0.5)
            await trio.to_thread.run_sync(nats_server.start)
        sent = sent_trade_ids(fake_bybit, LINEAR_SYMBOLS)
        await wait_stream_count(nats_server.url, len(sent), timeout=30)
    finally:
        rc = await stop_replica(proc)
    assert rc == 0, log.read_text()[-3000:]
    _assert_exactly_once(await messages(nats_server.url), sent)
    metrics = final_metrics(log, "nats")
    # The outage really hit the sink: its connection saw the server go and come back.
    # (Whether a publish also had to be retried depends on whether an ack timed out
    # during the 0.5 s, so `retried` is not asserted.)
    text = log.read_text()
    assert "NATS: disconnected from" in text and "NATS: reconnected" in text, text[-3000:]
    assert "failed" not in metrics and "lost_at_shutdown" not in metrics


async def test_stream_leader_killed_in_r3_cluster_two_replicas_each_trade_once(
        tmp_path: Path, fake_bybit, nats_cluster):
    urls = nats_cluster.urls
    procs, logs = [], []
    for name in ("a", "b"):
        config = replica_config(tmp_path / f"{name}.toml", fake_bybit, urls, replicas=3,
                                symbols=LINEAR_SYMBOLS)
        logs.append(tmp_path / f"{name}.log")
        procs.append(await start_replica(config, logs[-1]))
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_market, fake_bybit, 4_000)
            await wait_stream_count(urls, 1)  # the stream exists, the sinks are publishing
            info = await trio.to_thread.run_sync(stream_info, urls)
            assert info.config.num_replicas == 3
            leader = nats_cluster.node(info.cluster.leader)
            await trio.to_thread.run_sync(leader.kill)
        sent = sent_trade_ids(fake_bybit, LINEAR_SYMBOLS)
        alive = [n.url for n in nats_cluster.nodes if n is not leader]
        await wait_stream_count(alive, len(sent), timeout=40)
    finally:
        for proc, log in zip(procs, logs, strict=True):
            rc = await stop_replica(proc)
            assert rc == 0, log.read_text()[-3000:]
    _assert_exactly_once(await messages(alive), sent)
    new_leader = (await trio.to_thread.run_sync(stream_info, alive)).cluster.leader
    assert new_leader != leader.name
    for log in logs:
        metrics = final_metrics(log, "nats")
        assert "failed" not in metrics and "lost_at_shutdown" not in metrics, metrics


async def test_two_replicas_bybit_klines_each_closed_candle_once_through_a_sigkill(
        tmp_path: Path, fake_bybit, nats_server):
    """Bybit's own 1m candles (the fake confirms a candle on the first trade after its end,
    by the trades' timestamps, so 20 virtual minutes take a second): two replicas, one
    SIGKILLed halfway; every confirmed candle is in the stream exactly once."""
    symbols = LINEAR_SYMBOLS[:4]
    procs, logs = [], []
    for name in ("a", "b"):
        config = replica_config(tmp_path / f"{name}.toml", fake_bybit, [nats_server.url],
                                symbols=symbols, source_extra='kline_intervals = ["1m"]',
                                streamer_extra="stats_interval = 0.2")
        text = config.read_text().replace('streams = ["trades"]',
                                          'streams = ["trades", "klines"]')
        config.write_text(text)
        logs.append(tmp_path / f"{name}.log")
        procs.append(await start_replica(config, logs[-1]))
    t0 = (1_764_000_000_000 // 60_000) * 60_000
    minutes = 20
    try:
        for k in range(minutes):
            for symbol in symbols:
                fake_bybit.trade("linear", symbol, ts=t0 + k * 60_000 + 1_000)
            await trio.sleep(0.05)
            if k == minutes // 2:
                # both replicas are past this point by their own counters (events acked by
                # NATS at least as many as the trades so far)
                so_far = len(sent_trade_ids(fake_bybit, symbols))
                for proc, log in zip(procs, logs, strict=True):
                    await wait_stats(log, "nats", proc, lambda m, n=so_far:
                                     m.get("published", 0) + m.get("duplicates", 0) >= n)
                kill_replica(procs[0])
        sent = sent_trade_ids(fake_bybit, symbols)
        closed_expected = {(s, 60_000, t0 + k * 60_000) for s in symbols
                           for k in range(minutes - 1)}
        await wait_stream_count(nats_server.url, len(sent) + len(closed_expected))
    finally:
        for proc in procs:
            if proc.poll() is None:
                assert await stop_replica(proc) == 0, logs[1].read_text()[-3000:]
    msgs = await messages(nats_server.url)
    ids = trade_ids(msgs)
    assert set(ids) == set(sent) and set(ids.values()) == {1}
    closed = closed_kline_keys(msgs)
    assert set(closed) == closed_expected, sorted(set(closed) ^ closed_expected)[:5]
    assert set(closed.values()) == {1}
    assert final_metrics(logs[1], "nats").get("duplicates", 0) > 0
