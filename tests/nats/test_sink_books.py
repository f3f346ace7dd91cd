"""Order books through the ``nats`` sink end to end: fake Bybit -> `streamer run` (a
subprocess, ``streams = ["orderbook"]``) -> a real nats-server. Each book message is one
JetStream message on ``bybit.linear.book.<SYMBOL>``; replaying the stream's messages in order
rebuilds the fake's books exactly, across a dropped delta the source resubscribed."""

from __future__ import annotations

from pathlib import Path

import msgspec
import trio
from nats_helpers import final_metrics, messages, start_replica, stop_replica, wait_stream_count
from pipelines import toml_list

from streamer.book import OrderBook
from streamer_nats.messages import decode_payload

SYMBOLS = ["BTCUSDT", "ETHUSDT"]

CONFIG = """
[streamer]
shutdown_timeout = 10

[[sources]]
name = "linear"
type = "bybit.linear"
symbols = {symbols}
streams = ["orderbook"]
book_depth = 50
book_stale_s = 60
url = "{ws}"
rest_url = "{rest}"

[[sinks]]
name = "nats"
type = "nats"
inputs = ["linear"]
url = {urls}
"""


async def test_book_messages_rebuild_the_fakes_books(tmp_path: Path, fake_bybit, nats_server):
    config = tmp_path / "books.toml"
    config.write_text(CONFIG.format(symbols=toml_list(SYMBOLS), ws=fake_bybit.ws_url("linear"),
                                    rest=fake_bybit.rest_url, urls=toml_list([nats_server.url])))
    log = tmp_path / "books.log"
    proc = await start_replica(config, log)
    topics = [f"orderbook.50.{s}" for s in SYMBOLS]
    try:
        with trio.fail_after(30):
            await fake_bybit.wait_subscribed("linear", topics)
        for i in range(30):
            if i == 10:
                fake_bybit.books.inject("linear", topics[0], "drop")
            for topic in topics:
                fake_bybit.push_book("linear", topic)
            if i == 11:  # BTCUSDT's delta after the dropped one: wait for its resubscribe
                # 2 snapshots + 24 pushes - the dropped one - the one that showed the gap
                # + the resubscribe's snapshot = 25.
                assert await wait_stream_count(nats_server.url, 25) == 25
            await trio.sleep(0.01)
        # 2 snapshots + 60 pushes - 1 dropped + 1 resubscribe snapshot - the delta that
        # showed the gap (dropped by the source).
        expected = 2 + 60 - 1 + 1 - 1
        assert await wait_stream_count(nats_server.url, expected) == expected
    finally:
        rc = await stop_replica(proc)
    assert rc == 0, log.read_text()[-3000:]
    msgs = await messages(nats_server.url)
    books = {s: OrderBook() for s in SYMBOLS}
    for m in msgs:
        (event,) = decode_payload(m.data)
        assert m.subject == f"bybit.linear.book.{event.symbol}"
        assert msgspec.json.decode(m.data)["data_type"] == "book"
        book = books[event.symbol]
        if event.kind == "snapshot":
            assert book.snapshot(event.bids, event.asks, event.update_id) == "ok"
        else:
            assert book.delta(event.bids, event.asks, event.update_id) == "ok"
    for symbol, topic in zip(SYMBOLS, topics, strict=True):
        assert books[symbol].top() == fake_bybit.books.book("linear", topic).levels()
    metrics = final_metrics(log, "linear")
    assert metrics["book_gaps"] == 1 and metrics["book_resyncs"] == 1, metrics
