"""Authentication: basic auth at the handshake, first-message auth, timeouts, refusal to
serve a non-loopback interface without auth."""

from __future__ import annotations

import hmac
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionClosed

from streamer import FatalError, Inbox
from streamer_websocket import auth as auth_module
from streamer_websocket.config import WebSocketConfig
from websocket.helpers import (
    StartSink,
    basic,
    close_code,
    connect,
    expect_rejected,
    kline,
    make_sink,
    recv,
    send,
)

KEY_ENV = "STREAMER_TEST_WS_KEY"


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, "s3cret-key")
    return "s3cret-key"


async def auth_sink(start_sink: StartSink, **options: Any) -> Any:
    return await start_sink(auth_user="alice", auth_key_env=KEY_ENV, **options)


async def test_loopback_without_auth_serves_at_once(start_sink: StartSink, nursery) -> None:
    with trio.fail_after(10):
        sink, inbox = await start_sink()
        ws = await connect(nursery, sink)
        await sink.wait_for_clients(1)
        await inbox.put([kline()])
        env = await recv(ws)
        assert env["channel"] == "linear" and env["data_type"] == "klines"
        assert env["data"][0]["symbol"] == "BTCUSDT"


async def test_basic_auth_accepted(start_sink: StartSink, nursery, key: str) -> None:
    with trio.fail_after(10):
        sink, inbox = await auth_sink(start_sink)
        ws = await connect(nursery, sink, headers=basic("alice", key))
        await sink.wait_for_clients(1)
        await inbox.put([kline()])
        assert (await recv(ws))["data_type"] == "klines"


@pytest.mark.parametrize(
    "headers",
    [basic("alice", "wrong"), basic("bob", "s3cret-key"), [(b"Authorization", b"Basic !!")],
     [(b"Authorization", b"Bearer s3cret-key")]],
    ids=["wrong-key", "wrong-user", "bad-base64", "not-basic"],
)
async def test_basic_auth_rejected_with_401(
    start_sink: StartSink, nursery, key: str, headers: list[tuple[bytes, bytes]]
) -> None:
    with trio.fail_after(10):
        sink, _ = await auth_sink(start_sink)
        rejection = await expect_rejected(sink, headers)
        assert rejection.status_code == 401
        assert sink.metrics["auth_failures"] == 1
        assert not sink.clients


async def test_first_message_auth_accepted(start_sink: StartSink, nursery, key: str) -> None:
    with trio.fail_after(10):
        sink, inbox = await auth_sink(start_sink)
        await inbox.put([kline(close=101.0)])  # in the snapshot, sent only after auth
        ws = await connect(nursery, sink)
        await send(ws, {"user": "alice", "key": key})
        assert await recv(ws) == {"status": "authenticated"}
        snapshot = await recv(ws)
        assert snapshot["data"][0]["close"] == 101.0
        await sink.wait_for_clients(1)
        await inbox.put([kline(close=102.0)])
        assert (await recv(ws))["data"][0]["close"] == 102.0


@pytest.mark.parametrize(
    "first",
    [{"user": "alice", "key": "wrong"}, {"user": "mallory", "key": "s3cret-key"},
     {"key": "s3cret-key"}, {"op": "subscribe", "args": [{"channel": "linear"}]}, "not json"],
    ids=["wrong-key", "wrong-user", "missing-user", "no-credentials", "garbage"],
)
async def test_first_message_auth_rejected(
    start_sink: StartSink, nursery, key: str, first: Any
) -> None:
    with trio.fail_after(10):
        sink, inbox = await auth_sink(start_sink)
        await inbox.put([kline()])  # a snapshot exists, and must not leak
        ws = await connect(nursery, sink)
        if isinstance(first, str):
            await ws.send_message(first)
        else:
            await send(ws, first)
        assert await recv(ws) == {"error": "Authentication failed"}
        with pytest.raises(ConnectionClosed) as info:
            await ws.get_message()
        assert close_code(info.value) == 4401
        assert sink.metrics["auth_failures"] == 1
        assert sink.metrics["clients_connected"] == 0


async def test_first_message_auth_timeout(
    start_sink: StartSink, nursery, key: str, autojump_clock
) -> None:
    with trio.fail_after(60):
        sink, inbox = await auth_sink(start_sink)
        await inbox.put([kline()])
        ws = await connect(nursery, sink)
        start = trio.current_time()
        assert await recv(ws) == {"error": "Authentication timeout"}
        assert trio.current_time() - start == pytest.approx(10.0, abs=0.5)
        with pytest.raises(ConnectionClosed) as info:
            await ws.get_message()
        assert close_code(info.value) == 4401
        assert sink.metrics["auth_timeouts"] == 1


async def test_credentials_compared_in_constant_time(
    start_sink: StartSink, nursery, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def recording(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth_module.hmac, "compare_digest", recording)
    with trio.fail_after(10):
        sink, _ = await auth_sink(start_sink)
        await expect_rejected(sink, basic("alice", "nope"))
        # Both user and key are compared, even when the user already matched (or not).
        assert (b"alice", b"alice") in calls and (b"nope", key.encode()) in calls
        calls.clear()
        ws = await connect(nursery, sink)
        await send(ws, {"user": "eve", "key": key})
        assert await recv(ws) == {"error": "Authentication failed"}
        assert (b"eve", b"alice") in calls and (key.encode(), key.encode()) in calls


async def test_nothing_is_sent_before_auth(
    start_sink: StartSink, nursery, key: str, autojump_clock
) -> None:
    with trio.fail_after(60):
        sink, inbox = await auth_sink(start_sink)
        await inbox.put([kline()])
        ws = await connect(nursery, sink)
        for _ in range(5):
            await inbox.put([kline(close=105.0)])
            await trio.sleep(1)
        # The first thing the client ever sees is the timeout error, no data.
        assert await recv(ws) == {"error": "Authentication timeout"}


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.1", "example.com"])
async def test_non_loopback_host_without_auth_is_fatal(host: str) -> None:
    sink = make_sink(host=host)
    with pytest.raises(FatalError, match=r"not loopback.*auth_user"):
        await sink.run(Inbox("ws"))


async def test_auth_user_without_key_is_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    sink = make_sink(auth_user="alice", auth_key_env=KEY_ENV)
    with pytest.raises(FatalError, match=KEY_ENV):
        await sink.run(Inbox("ws"))
    monkeypatch.setenv(KEY_ENV, "")
    with pytest.raises(FatalError, match="empty or unset"):
        await sink.run(Inbox("ws"))


async def test_non_loopback_with_auth_starts(start_sink: StartSink, key: str, nursery) -> None:
    with trio.fail_after(10):
        sink, _ = await auth_sink(start_sink, host="0.0.0.0")
        ws = await connect(nursery, sink, headers=basic("alice", key))
        await sink.wait_for_clients(1)
        await ws.aclose()


async def test_port_in_use_is_fatal(start_sink: StartSink) -> None:
    with trio.fail_after(10):
        sink, _ = await start_sink()
        other = make_sink(port=sink.port)
        with pytest.raises(FatalError, match="cannot listen"):
            await other.run(Inbox("ws"))


@pytest.mark.parametrize(
    "options, message",
    [({"port": 70000}, "port"), ({"path": "ws"}, "path"), ({"auth_user": ""}, "auth_user"),
     ({"client_queue_size": 0}, "client_queue_size"), ({"ping_interval": -1}, "ping_interval"),
     ({"auth_timeout": 0}, "auth_timeout"), ({"max_clients": 0}, "max_clients")],
)
def test_config_validation(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WebSocketConfig(**options)
