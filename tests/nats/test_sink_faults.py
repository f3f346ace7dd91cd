"""The ``nats`` sink when NATS is away: it starts anyway, buffers up to ``max_buffer``
events, drops (and counts as ``failed``) beyond, and publishes the rest once NATS is up."""

from __future__ import annotations

import pytest
import trio
from nats_helpers import messages, stream_count, trade_ids, wait_log
from nats_server import NatsServer

from streamer import Trade
from streamer.testing import running_pipeline

TOML = """
[[sources]]
name = "src"
type = "testing.scripted"

[[sinks]]
name = "nats"
type = "nats"
inputs = ["src"]
url = "{url}"
max_buffer = 500
ack_timeout = 0.5
retry_initial = 0.05
retry_max = 0.2
connect_timeout = 0.3
"""


def _trades(start: int, n: int) -> list[Trade]:
    return [Trade("linear", "BTCUSDT", i, "Buy", "1", "1", f"t{i}") for i in range(start,
                                                                                start + n)]


async def test_buffer_bounded_while_nats_is_down_then_published(plugin_manager):
    server = NatsServer()  # ports chosen, not started yet
    toml = TOML.format(url=server.url)
    try:
        async with running_pipeline(toml, plugin_manager) as pipeline:
            source, sink = pipeline.node("src"), pipeline.node("nats")
            for i in range(0, 800, 100):  # 800 events into a 500-event buffer
                source.push(_trades(i, 100))
            with trio.fail_after(60):  # a hang, not a speed check
                while sink.metrics["failed"] < 300:
                    await trio.sleep(0.05)
            assert sink.metrics["failed"] == 300  # the oldest 300, counted
            await trio.to_thread.run_sync(server.start)
            with trio.fail_after(60):  # a hang, not a speed check
                while sink.metrics["published"] < 500:
                    await trio.sleep(0.1)
            assert await stream_count(server.url) == 500
        ids = trade_ids(await messages(server.url))
        assert set(ids) == {f"t{i}" for i in range(300, 800)} and set(ids.values()) == {1}
    finally:
        server.stop()


async def test_sigterm_with_nats_down_exits_within_the_shutdown_timeout(tmp_path, fake_bybit):
    """NATS unreachable, events buffered: SIGTERM still exits once the sink's
    shutdown_timeout is over, counting what it could not publish as ``lost_at_shutdown``;
    events were lost, so the status is 3."""
    import signal

    from nats_helpers import SYMBOLS, final_metrics, replica_config, start_replica

    server = NatsServer()  # never started: its port refuses connections
    # 200 trades into a buffer of 150: the sink counts the 50 oldest as failed, so a stats
    # line with failed=50 says that all 200 reached it, however long a loaded machine takes.
    config = replica_config(tmp_path / "a.toml", fake_bybit, [server.url],
                            sink_extra="shutdown_timeout = 1.0\nmax_buffer = 150",
                            streamer_extra="stats_interval = 0.2")
    log = tmp_path / "a.log"
    proc = await start_replica(config, log)
    try:
        await fake_bybit.run_market("linear", SYMBOLS, rate=1_000, count=200, tickers=False)
        await wait_log(log, "failed=50", proc)
        proc.send_signal(signal.SIGTERM)
        with trio.fail_after(60):  # a hang, not a speed check
            while proc.poll() is None:
                await trio.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        server.stop()
    text = log.read_text()
    assert proc.returncode == 3, text[-3000:]
    assert "events lost: 200 in all; nats lost_at_shutdown=150, failed=50" in text, text[-3000:]
    # The sink's own deadline ended it (measured by the process, not by this test)
    assert "NATS: 150 buffered events not acknowledged within 1.0s of shutdown; lost" in text, \
        text[-3000:]
    final = final_metrics(log, "nats")
    assert (final.get("failed"), final.get("lost_at_shutdown")) == (50, 150), text[-3000:]
    assert "Traceback" not in text, text[-3000:]


PARTIAL_TOML = """
[[sources]]
name = "src"
type = "testing.scripted"

[[sinks]]
name = "nats"
type = "nats"
inputs = ["src"]
url = "{url}"
"""


async def test_a_partial_candle_does_not_shadow_the_complete_one(plugin_manager, nats_server):
    """Replica A closed the minute partial (it missed trades), replica B complete, both into
    one stream through the real sink: the complete one is stored, not taken for a duplicate;
    B's second copy of the complete one is."""
    import msgspec

    from streamer import Kline

    def candle(partial: bool, count: int) -> Kline:
        return Kline("linear", "BTCUSDT", 60_000, 1_764_000_000_000, 1.0, 2.0, 0.5, 1.5,
                     float(count), count, True, None, partial)

    async with running_pipeline(PARTIAL_TOML.format(url=nats_server.url),
                                plugin_manager) as pipeline:
        source, sink = pipeline.node("src"), pipeline.node("nats")
        batches = [[candle(True, 3)], [candle(False, 10)], [candle(False, 10)]]
        for done, batch in enumerate(batches, start=1):
            source.push(batch)
            with trio.fail_after(60):  # one at a time: A's partial first, then B twice
                while sink.metrics["published"] + sink.metrics["duplicates"] < done:
                    await trio.sleep(0.02)
        assert (sink.metrics["published"], sink.metrics["duplicates"]) == (2, 1)
    stored = [msgspec.json.decode(m.data)["data"][0] for m in await messages(nats_server.url)]
    assert [(k["trade_count"], k.get("partial", False)) for k in stored] == [(3, True),
                                                                           (10, False)]


async def test_existing_stream_with_other_subjects_is_a_fatal_error(plugin_manager,
                                                                    nats_server):
    import asyncio

    import nats as nats_py

    from streamer import FatalError

    async def create() -> None:
        nc = await nats_py.connect(nats_server.url)
        await nc.jetstream().add_stream(name="BYBIT", subjects=["elsewhere.>"])
        await nc.close()

    await trio.to_thread.run_sync(lambda: asyncio.run(create()))
    failures: list[BaseException] = []
    try:
        with trio.move_on_after(60):  # a hang; then ``failures`` stays empty and fails below
            async with running_pipeline(PARTIAL_TOML.format(url=nats_server.url),
                                        plugin_manager):
                await trio.sleep_forever()
    except BaseException as exc:  # the pipeline stops with the FatalError inside a group
        failures.append(exc)
    leaves: list[BaseException] = []
    stack = list(failures)
    while stack:
        exc = stack.pop()
        if hasattr(exc, "exceptions"):  # an exception group (3.10: the backport's)
            stack.extend(exc.exceptions)
        else:
            leaves.append(exc)
    fatal = [e for e in leaves if isinstance(e, FatalError)]
    assert fatal and "do not include 'bybit.>'" in str(fatal[0]), leaves


async def test_shutdown_cuts_a_backoff_short_with_nats_down(autojump_clock):
    """SIGTERM while the writer sleeps between connect attempts: the sink is done exactly
    shutdown_timeout later, not after the backoff (MockClock; NATS never started)."""
    import logging

    from streamer import Backoff, Context
    from streamer._inbox import Inbox
    from streamer._metrics import Metrics
    from streamer_nats.sink import NatsSink, NatsSinkConfig

    server = NatsServer()  # never started: its port refuses connections
    context = Context(name="nats", type="nats", logger=logging.getLogger("streamer.sink.nats"),
                      metrics=Metrics())
    sink = NatsSink(NatsSinkConfig(url=server.url, shutdown_timeout=1.0, connect_timeout=0.1,
                                   retry_initial=20.0, retry_max=30.0), context)
    sink._backoff = Backoff(20.0, 30.0, jitter=False)  # every sleep 20 s or more
    inbox = Inbox("nats", 100)
    given_up_at: list[float] = []
    unreachable: list[float] = []
    in_backoff = trio.Event()

    class WhenGivenUp(logging.Handler):
        # The sink logs on trio's thread both when a connect fails (the writer's backoff
        # sleep starts right after, with no checkpoint between) and, when it stops, what it
        # could not publish: the time of that line is when the sink gave up.
        def emit(self, record: logging.LogRecord) -> None:
            if "unreachable" in record.getMessage():
                unreachable.append(trio.current_time())
                if len(unreachable) == 2:
                    in_backoff.set()
            if "not acknowledged" in record.getMessage():
                given_up_at.append(trio.current_time())

    handler = WhenGivenUp()
    context.logger.addHandler(handler)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sink.run, inbox)
        await inbox.put([Trade("linear", "BTCUSDT", 1, "Buy", "1", "1", "1")])
        # The start-up attempt and the writer's: the writer is now in its 20 s sleep. Wait
        # for the log line, not by polling: a polling sleep would make the autojump clock
        # race through virtual time while the attempts take real time on the asyncio thread.
        await in_backoff.wait()
        closed_at = trio.current_time()
        inbox.close()
    context.logger.removeHandler(handler)
    assert unreachable[1] == closed_at  # no virtual time passed: the sleep had just begun
    assert given_up_at == [pytest.approx(closed_at + 1.0, abs=1e-6)]
    assert context.metrics["connect_failures"] == 2
    assert context.metrics["lost_at_shutdown"] == 1
