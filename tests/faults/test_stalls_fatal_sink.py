"""One sink's fatal error with ``on_fatal = "disable"``: a real redis-server changes its
password mid-run (and drops its clients), the ``redis`` sink reconnects with the old one and is
rejected (a FatalError), and only that sink stops: the collector next to it receives every
trade before, during and after, and the redis sink's events from then on are counted as lost.
Real time (the Redis writes run in a worker thread), bounded by ``fail_after``.
"""

from __future__ import annotations

import msgspec
import pytest
import trio
import trio.to_thread
from redis_server import RedisServer

from streamer import Trade
from streamer.testing import running_pipeline

STREAM_KEY = "bybit-streamer:stream:linear:trades"
PW_ENV = "STREAMER_TEST_FATAL_SINK_PW"

PIPELINE = """
[[sources]]
name = "src"
type = "testing.scripted"
end_when_done = false

[[sinks]]
name = "pub"
type = "redis"
port = {port}
stream = true
password_env = "{pw_env}"
reconnect_initial = 0.05
reconnect_max = 0.2
on_fatal = "disable"

[[sinks]]
name = "out"
type = "testing.collect"
"""


def trade(i: int) -> Trade:
    return Trade("linear", "BTCUSDT", 1_700_000_000_000 + i, "Buy", str(100 + i), "1", str(i))


async def wait_until(predicate, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    with trio.fail_after(timeout):
        while not await trio.to_thread.run_sync(predicate):
            await trio.sleep(0.02)


async def test_redis_rejecting_credentials_mid_run_disables_that_sink_alone(
    plugin_manager, monkeypatch: pytest.MonkeyPatch
) -> None:
    with RedisServer(password="first-pw") as server:
        monkeypatch.setenv(PW_ENV, "first-pw")
        admin = server.client()
        toml = PIPELINE.format(port=server.port, pw_env=PW_ENV)
        with trio.fail_after(60):
            async with running_pipeline(toml, plugin_manager) as pipeline:
                src, out = pipeline.node("src"), pipeline.node("out")
                for i in range(5):
                    src.push([trade(i)])
                await wait_until(lambda: admin.xlen(STREAM_KEY) >= 1)  # the first flush

                def change_password() -> None:
                    admin.config_set("requirepass", "second-pw")
                    admin.client_kill_filter(_type="normal", skipme=True)

                await trio.to_thread.run_sync(change_password)
                for i in range(5, 10):
                    src.push([trade(i)])
                while not pipeline.nodes["pub"].context.metrics["disabled"]:
                    await trio.sleep(0.02)
                for i in range(10, 15):
                    src.push([trade(i)])
                # Trades 10-14, pushed after the disable, arrived: the run goes on, not
                # stopped by that sink's fatal error.
                await out.wait_for(15)
                assert pipeline.fatal is None and not out.flushed
        assert [e.trade_id for e in out.events] == [str(i) for i in range(15)]
        # Every one of the 15 trades was either written or counted as lost: those put after
        # the sink was disabled (10-14) are lost_after_stop; those still in the writer's buffer
        # when Redis refused the new password are lost_on_fatal (how many were written
        # before the refusal depends on when the writer ran, the sum does not).
        written = {t["i"] for _, fields in admin.xrange(STREAM_KEY)
                   for t in msgspec.json.decode(fields[b"data"])["data"]}
        losses = pipeline.losses()
        assert set(losses) == {"pub"}, losses
        assert losses["pub"]["lost_after_stop"] >= 5, losses
        assert set(losses["pub"]) <= {"lost_after_stop", "lost_on_fatal"}, losses
        assert len(written) + pipeline.lost_total() == 15, (written, losses)
        assert written == {str(i) for i in range(len(written))}  # the oldest ones
