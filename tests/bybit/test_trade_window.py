"""Gap recovery's trade window: only the newest millisecond's ids are kept, and that is enough
to tell REST recent-trade rows from trades already emitted (behaviour 7)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio
from bybit.harness import make_source, run_source

from streamer._events import Trade
from streamer_bybit.connection import TradeWindow


def trades(ts_and_ids: list[tuple[int, str]]) -> list[Trade]:
    return [Trade("linear", "BTCUSDT", ts, "Buy", "1", "1", i) for ts, i in ts_and_ids]


def feeder(window: TradeWindow, how: str) -> Callable[[list[tuple[int, str]]], None]:
    """``add``: one message's trades at once (recovery); ``note``: one by one (live reads)."""
    if how == "add":
        return lambda ts_and_ids: window.add(trades(ts_and_ids))

    def note(ts_and_ids: list[tuple[int, str]]) -> None:
        for t in trades(ts_and_ids):
            window.note(t)

    return note


@pytest.mark.parametrize("how", ["add", "note"])
def test_window_keeps_the_ids_of_the_newest_millisecond_only(how: str):
    window = TradeWindow()
    feed = feeder(window, how)
    # A burst: 5,000 trades stamped the same millisecond, over 50 messages.
    for m in range(50):
        feed([(1_000, f"a{m}.{k}") for k in range(100)])
    assert window.newest_ts == 1_000
    assert len(window.ids()) == 5_000
    # A later millisecond: the burst's ids are forgotten.
    feed([(1_000, "a-late"), (1_001, "b1"), (1_001, "b2")])
    assert (window.newest_ts, window.ids()) == (1_001, frozenset({"b1", "b2"}))
    # Older trades (recovered after newer live ones) change nothing.
    feed([(999, "old"), (1_000, "old2")])
    assert (window.newest_ts, window.ids()) == (1_001, frozenset({"b1", "b2"}))
    feed([(1_001, "b3")])
    assert window.ids() == {"b1", "b2", "b3"}


def test_window_memory_does_not_grow_with_the_trades_it_saw():
    window = TradeWindow()
    for ts in range(100_000):
        window.add(trades([(ts, f"t{ts}")]))
    assert (window.newest_ts, window.ids()) == (99_999, frozenset({"t99999"}))
    assert not hasattr(window, "__dict__")  # nothing but newest_ts and one ms of ids


def test_ids_snapshot_is_not_changed_by_later_trades():
    window = TradeWindow()
    window.add(trades([(5, "x")]))
    snapshot = window.ids()
    window.add(trades([(5, "y")]))
    window.add(trades([(6, "z")]))
    assert snapshot == {"x"}


class GatedRest:
    """An HTTP proxy in front of the fake's REST that holds recent-trade requests while its
    gate is shut (the client sends ``Connection: close``: one request per connection)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.gate = trio.Event()
        self.gate.set()
        self.held_requests = 0
        self.port = 0

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED):
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, client: trio.SocketStream) -> None:
        async with client:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = await client.receive_some(65536)
                if not chunk:
                    return
                request += chunk
            if b"/v5/market/recent-trade" in request.split(b"\r\n", 1)[0]:
                self.held_requests += 1
                await self.gate.wait()
            upstream = await trio.open_tcp_stream("127.0.0.1", self.upstream_port)
            async with upstream:
                await upstream.send_all(request)
                while chunk := await upstream.receive_some(65536):
                    await client.send_all(chunk)


async def test_ids_sharing_the_newest_t_and_held_live_trades_are_not_re_emitted(
    fake_bybit, collector
):
    fake = fake_bybit
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            proxy = GatedRest(fake.port)
            await nursery.start(proxy.serve)
            source = make_source(
                fake, symbols=["BTCUSDT"], rest_url=f"http://127.0.0.1:{proxy.port}"
            )
            await run_source(nursery, source, collector)
            # The newest millisecond before the drop spans two messages.
            fake.trade("linear", "BTCUSDT", count=3, ts=5_000)
            fake.trade("linear", "BTCUSDT", count=2, ts=5_000)
            await collector.wait_for(lambda ev: len(ev) == 5)
            fake.pause_topic("linear", "publicTrade.BTCUSDT")
            fake.trade("linear", "BTCUSDT", count=2, ts=5_000)  # same T, never seen live
            fake.trade("linear", "BTCUSDT", ts=6_000)
            await fake.flush()
            proxy.gate = trio.Event()  # recovery's REST request waits
            fake.drop_connections()
            fake.resume_topic("linear", "publicTrade.BTCUSDT")
            await fake.wait_subscribed("linear", ["publicTrade.BTCUSDT"])
            while proxy.held_requests == 0:
                await trio.sleep(0.01)
            # Live while recovery waits: held, and also among the REST rows.
            fake.trade("linear", "BTCUSDT", count=2, ts=7_000)
            connection = source.connections[0]
            while connection.recovery.held_count < 2:
                await trio.sleep(0.01)
            proxy.gate.set()
            history = [t["i"] for t in fake.history("linear", "BTCUSDT")]
            await collector.wait_for(lambda ev: len(ev) >= len(history))
            fake.trade("linear", "BTCUSDT", ts=8_000)
            history = [t["i"] for t in fake.history("linear", "BTCUSDT")]
            await collector.wait_for(lambda ev: len(ev) >= len(history))
            nursery.cancel_scope.cancel()
    assert [e.trade_id for e in collector.of(Trade)] == history
    assert source.metrics["recovered_trades"] == 3
    assert source.metrics["trade_gaps"] == 0
    assert connection.windows["BTCUSDT"].newest_ts == 8_000
