"""Hostile clients: replies never read, subscription floods, sockets that never authenticate,
guessed keys. Real clients on 127.0.0.1 (several source addresses of the loopback range)."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import pytest
import trio

from websocket.helpers import (
    StartSink,
    basic,
    client_frame,
    connect,
    expect_rejected,
    kline,
    raw_handshake,
    read_close_code,
    recv,
    recv_until_data,
    send,
    send_all,
    stalled_client,
)

KEY_ENV = "STREAMER_TEST_WS_HOSTILE_KEY"


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, "s3cret-key")
    return "s3cret-key"


async def auth_sink(start_sink: StartSink, **options: Any) -> Any:
    return await start_sink(auth_user="alice", auth_key_env=KEY_ENV, **options)


def big_subscribe(max_bytes: int = 65536) -> str:
    """A valid subscribe request just under ``max_bytes``: its ack is about as large."""
    symbols = [f"SYM{i:06d}USDT" for i in range(1800)]
    args = [{"channel": "linear", "data_type": "trades", "symbols": symbols},
            {"channel": "spot", "data_type": "trades", "symbols": symbols}]
    text = msgspec.json.encode({"op": "subscribe", "args": args}).decode()
    assert 40_000 < len(text) < max_bytes
    return text


async def test_unread_replies_close_the_client_with_1008(start_sink: StartSink, nursery) -> None:
    # send_timeout far beyond the test's deadline: only the reply bound can end this client.
    sink, _ = await start_sink(max_queued_replies=16, send_timeout=60)
    sock = await stalled_client(sink)
    await sink.wait_for_clients(1)
    request = client_frame(big_subscribe())
    with trio.fail_after(10):
        for _ in range(400):  # ~20 MB of acks were it unbounded
            for client in sink.clients:
                assert len(client.control) <= 16
            if not await send_all(sock, request) or not sink.clients:
                break
        await sink.wait_for_clients(0)
    assert sink.metrics["reply_overflow_disconnects"] == 1
    assert sink.metrics["clients_disconnected"] == 1
    # A reading client is untouched and still answered.
    ws = await connect(nursery, sink)
    await send(ws, {"op": "ping"})
    assert await recv(ws) == {"op": "pong"}
    sock.close()


async def test_reply_overflow_close_code_is_1008(start_sink: StartSink, nursery) -> None:
    """Replies asked for faster than they are sent: the client learns why it was closed."""
    with trio.fail_after(10):
        sink, _ = await start_sink(max_queued_replies=4)
        sock = await stalled_client(sink)
        await sink.wait_for_clients(1)
        # 200 pings in one write: the server reads them all before its sender has sent
        # more than a few pongs (small, so the socket still takes the close frame).
        assert await send_all(sock, client_frame('{"op":"ping"}') * 200)
        await sink.wait_for_clients(0)
        assert await read_close_code(sock) == 1008
        assert sink.metrics["reply_overflow_disconnects"] == 1


async def test_subscription_set_is_capped_and_grows_in_place(
    start_sink: StartSink, nursery
) -> None:
    with trio.fail_after(10):
        sink, _ = await start_sink(max_subscriptions_per_client=50)
        ws = await connect(nursery, sink)
        await sink.wait_for_clients(1)
        (client,) = sink.clients

        async def subscribe(args: list[dict[str, Any]]) -> dict[str, Any]:
            await send(ws, {"op": "subscribe", "args": args})
            return await recv(ws)

        first = [f"A{i:03d}" for i in range(30)]
        assert (await subscribe([{"channel": "linear", "data_type": "trades",
                                  "symbols": first}]))["success"] is True
        held = client.subscription
        assert held is not None and held.size == 30
        more = [f"B{i:03d}" for i in range(30)]
        reply = await subscribe([{"channel": "linear", "data_type": "trades", "symbols": more}])
        assert reply["success"] is False and "subscription limit reached" in reply["error"]
        assert held.size == 30  # a refused request changes nothing
        # No channel/data_type: the symbols count once per data_type (for every channel).
        reply = await subscribe([{"symbols": ["X1", "X2", "X3", "X4", "X5", "X6", "X7"]}])
        assert reply["success"] is False
        assert (await subscribe([{"channel": "linear", "data_type": "trades",
                                  "symbols": first + more[:20]}]))["success"] is True
        assert held.size == 50
        # The same symbols again add nothing; "all symbols" of a new pair counts one... past 50.
        assert (await subscribe([{"channel": "linear", "data_type": "trades",
                                  "symbols": first}]))["success"] is True
        assert (await subscribe([{"channel": "spot", "data_type": "price"}]))["success"] is False
        # Applied in place: the held subscription is the same object, never a copy.
        assert client.subscription is held
        await send(ws, {"op": "unsubscribe", "args": [{"channel": "linear",
                                                        "data_type": "trades",
                                                        "symbols": more[:20]}]})
        assert (await recv(ws))["success"] is True and held.size == 30
        assert sink.metrics["bad_client_messages"] == 3


async def test_unauthenticated_sockets_cannot_lock_users_out(
    start_sink: StartSink, nursery, key: str
) -> None:
    with trio.fail_after(10):
        sink, inbox = await auth_sink(start_sink, max_clients=2, max_unauthenticated=8,
                                      max_unauthenticated_per_address=1, auth_timeout=60)
        await inbox.put([kline()])
        idle = [await stalled_client(sink, source="127.0.0.2")]
        # Past the per-address limit: closed at once with 1013.
        extra = await stalled_client(sink, source="127.0.0.2")
        assert await read_close_code(extra) == 1013
        # Eight addresses (the fewest that can) fill the pool.
        idle += [await stalled_client(sink, source=f"127.0.0.{i}") for i in range(3, 10)]
        # Past the total: 1013 for another address too.
        other = await stalled_client(sink, source="127.0.0.10")
        assert await read_close_code(other) == 1013
        assert sink.metrics["rejected_unauthenticated"] == 2
        # Users who authenticate are admitted up to max_clients, whatever waits unauthenticated,
        # even from an address at its unauthenticated limit.
        users = []
        for _ in range(2):
            ws = await connect(nursery, sink, headers=basic("alice", key))
            assert (await recv_until_data(ws))["data_type"] == "klines"
            users.append(ws)
        await sink.wait_for_clients(2)
        assert sink.metrics["rejected_max_clients"] == 0
        # A first-message client authenticates once a place is free, and frees it on success.
        idle.pop().close()
        while sink.unauthenticated > 7:
            await trio.sleep(0.001)
        await users.pop().aclose()
        await sink.wait_for_clients(1)
        ws = await connect(nursery, sink)
        await send(ws, {"user": "alice", "key": key})
        assert await recv(ws) == {"status": "authenticated"}
        await sink.wait_for_clients(2)
        assert sink.unauthenticated == 7  # the authenticated one left its place
        late, response = await raw_handshake(sink, source="127.0.0.9")
        assert response.startswith(b"HTTP/1.1 101")
        while sink.unauthenticated < 8:
            await trio.sleep(0.001)
        for sock in [*idle, extra, other, late]:
            sock.close()


async def test_failed_auth_is_delayed_counted_logged_and_locked_out(
    start_sink: StartSink, nursery, key: str, autojump_clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="test.websocket")
    with trio.fail_after(300):
        sink, _ = await auth_sink(start_sink, auth_failure_delay=2.0, max_auth_failures=3,
                                  auth_failure_window=60.0)
        for attempt in range(2):
            start = trio.current_time()
            ws = await connect(nursery, sink)
            await send(ws, {"user": "alice", "key": f"guess{attempt}"})
            assert await recv(ws) == {"error": "Authentication failed"}
            assert trio.current_time() - start == pytest.approx(2.0, abs=1e-6)  # the delay
        start = trio.current_time()
        assert (await expect_rejected(sink, basic("alice", "guess"))).status_code == 401
        assert trio.current_time() - start == pytest.approx(2.0, abs=1e-6)
        assert sink.metrics["auth_failures"] == 3
        # Three failures within the window: refused even with the right key, without delay.
        start = trio.current_time()
        assert (await expect_rejected(sink, basic("alice", key))).status_code == 429
        assert trio.current_time() == start  # refused at once, no delay
        assert sink.metrics["auth_lockouts"] == 1
        lines = [r.getMessage() for r in caplog.records if "in total" in r.getMessage()]
        assert lines and "1 failed authentications in total" in lines[0]
        # Once the window has passed, the right key is served again.
        await trio.sleep(60)
        ws = await connect(nursery, sink, headers=basic("alice", key))
        await sink.wait_for_clients(1)
        assert sink.metrics["auth_failures"] == 3
