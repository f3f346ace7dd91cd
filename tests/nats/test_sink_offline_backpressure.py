"""The ``nats`` sink behind a source that reads stored data (``testing.stored``, declared not
live like a capture replay or the nats source) while NATS is down: it waits for room in its
buffer (``max_buffer``) instead of dropping the oldest, its inbox fills and blocks, the source
waits; once NATS is up every event is stored once and the run loses nothing. The same outage
behind a live source drops and counts the oldest (test_sink_faults.py,
test_buffer_bounded_while_nats_is_down_then_published: unchanged)."""

from __future__ import annotations

import trio
from nats_helpers import messages, stream_count, trade_ids
from nats_server import NatsServer

from streamer import Trade
from streamer.testing import running_pipeline

MAX_BUFFER, QUEUE, BATCH, BATCHES = 500, 4, 100, 20
TOTAL = BATCH * BATCHES

TOML = """
[[sources]]
name = "src"
type = "testing.stored"

[[sinks]]
name = "nats"
type = "nats"
inputs = ["src"]
url = "{url}"
max_buffer = {max_buffer}
queue_size = {queue}
ack_timeout = 0.5
retry_initial = 0.05
retry_max = 0.2
connect_timeout = 0.3
"""


def _trades(start: int, n: int) -> list[Trade]:
    return [Trade("linear", "BTCUSDT", i, "Buy", "1", "1", f"t{i}")
            for i in range(start, start + n)]


async def test_a_replay_waits_for_nats_and_loses_nothing(plugin_manager):
    server = NatsServer()  # ports chosen, not started yet
    toml = TOML.format(url=server.url, max_buffer=MAX_BUFFER, queue=QUEUE)
    try:
        async with running_pipeline(toml, plugin_manager) as pipeline:
            source, sink = pipeline.node("src"), pipeline.node("nats")
            inbox = pipeline.nodes["nats"].inbox
            assert sink.context.live_input is False
            for i in range(0, TOTAL, BATCH):
                source.push(_trades(i, BATCH))
            with trio.fail_after(60):  # a hang, not a speed check
                # The sink waits for room, its inbox fills, the source waits (without the
                # wait the source emits everything and the sink drops the oldest).
                while len(inbox) < QUEUE and source.emitted < TOTAL:
                    await trio.sleep(0.05)
            assert source.emitted < TOTAL
            assert sink.metrics["failed"] == 0
            assert len(sink._buffer) <= MAX_BUFFER
            await trio.to_thread.run_sync(server.start)
            source.finish()
            with trio.fail_after(60):  # a hang, not a speed check
                while sink.metrics["published"] < TOTAL:
                    await trio.sleep(0.1)
            assert await stream_count(server.url) == TOTAL
        ids = trade_ids(await messages(server.url))
        assert ids == {f"t{i}": 1 for i in range(TOTAL)}
        assert sink.metrics["failed"] == 0
        assert pipeline.losses() == {}
    finally:
        server.stop()
