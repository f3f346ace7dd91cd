"""Hostile authentication without a proxy: lockouts per (address, user), the share of the
unauthenticated pool one address may hold, and JSON nested too deeply or too large, before
and after authentication. Raw clients from distinct loopback addresses (127.0.0.x)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionClosed

from websocket.helpers import (
    StartSink,
    answer,
    basic,
    client_frame,
    close_code,
    connect,
    raw_handshake,
    read_close_code,
    recv,
    send,
    send_all,
    stalled_client,
)

KEY_ENV = "STREAMER_TEST_WS_HOSTILE_AUTH_KEY"
KEY = "h0stile-key"
AUTHENTICATED = '{"status":"authenticated"}'
AUTH_FAILED = '{"error":"Authentication failed"}'
LOCKED_OUT = '{"error":"Too many failed authentications"}'
#: 5,000 levels of nesting in 10,000 bytes, well inside max_client_message.
DEEP = "[" * 5000 + "]" * 5000


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, KEY)
    return KEY


async def auth_sink(start_sink: StartSink, **options: Any) -> Any:
    sink, _ = await start_sink(auth_user="alice", auth_key_env=KEY_ENV, **options)
    return sink


async def handshake_status(sink: Any, source: str, user: str, key: str) -> int:
    sock, response = await raw_handshake(sink, source=source, headers=basic(user, key))
    sock.close()
    return int(response.split()[1])


async def first_message(sink: Any, source: str, text: str) -> tuple[str | None, int | None]:
    sock, response = await raw_handshake(sink, source=source)
    assert response.startswith(b"HTTP/1.1 101"), response
    assert await send_all(sock, client_frame(text))
    reply, code = await answer(sock)
    sock.close()
    return reply, code


async def metric_reaches(sink: Any, name: str, value: int) -> None:
    while sink.metrics[name] < value:
        await trio.sleep(0.001)


def errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def test_lockout_is_per_address_and_user(start_sink: StartSink, key: str) -> None:
    """3 wrong keys for alice from .2: alice from .2 is refused (even with the right key),
    alice from .3 is admitted, and .2 naming another user is only told it failed."""
    with trio.fail_after(20):
        sink = await auth_sink(start_sink, max_auth_failures=3, auth_failure_delay=0)
        for _ in range(3):
            assert await handshake_status(sink, "127.0.0.2", "alice", "guess") == 401
        assert await handshake_status(sink, "127.0.0.2", "alice", key) == 429
        assert await first_message(sink, "127.0.0.2", f'{{"user":"alice","key":"{key}"}}') \
            == (LOCKED_OUT, 4429)
        assert await handshake_status(sink, "127.0.0.3", "alice", key) == 101
        assert await handshake_status(sink, "127.0.0.2", "bob", "guess") == 401
        assert sink.metrics["auth_failures"] == 4
        assert sink.metrics["auth_lockouts"] == 2


async def test_sixteen_idle_sockets_from_four_addresses_leave_room(
    start_sink: StartSink, key: str
) -> None:
    """Defaults (64 places, 4 per address): 5 idle sockets from each of 4 addresses hold 16
    places and 4 are refused with 1013; a 5th address authenticates by first message."""
    with trio.fail_after(20):
        sink = await auth_sink(start_sink, auth_timeout=60)
        idle, refused = [], 0
        for address in range(2, 6):
            idle += [await stalled_client(sink, source=f"127.0.0.{address}") for _ in range(4)]
            while sink.unauthenticated < 4 * (address - 1):
                await trio.sleep(0.001)
            extra = await stalled_client(sink, source=f"127.0.0.{address}")
            refused += await read_close_code(extra) == 1013
            extra.close()
        assert refused == 4
        assert sink.unauthenticated == 16
        assert await first_message(sink, "127.0.0.6", f'{{"user":"alice","key":"{key}"}}') \
            == (AUTHENTICATED, None)
        assert sink.metrics["rejected_unauthenticated"] == 4
        for sock in idle:
            sock.close()


async def test_deep_json_before_auth_is_a_counted_failure(
    start_sink: StartSink, key: str, autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Nesting too deep as the first message: a failure counted and answered after the
    delay, no traceback, one warning line; after exactly 3 the address is refused at once."""
    caplog.set_level(logging.WARNING, logger="test.websocket")
    with trio.fail_after(300):
        sink = await auth_sink(start_sink, max_auth_failures=3, auth_failure_delay=1.0,
                               auth_timeout=60)
        for _ in range(3):
            start = trio.current_time()
            assert await first_message(sink, "127.0.0.2", DEEP) == (AUTH_FAILED, 4401)
            assert trio.current_time() - start == pytest.approx(1.0, abs=1e-6)
        start = trio.current_time()
        assert await first_message(sink, "127.0.0.2", DEEP) == (LOCKED_OUT, 4429)
        assert trio.current_time() == start
        assert sink.metrics["auth_failures"] == 3
        assert sink.metrics["auth_lockouts"] == 1
        assert sink.metrics["client_errors"] == 0
        assert errors(caplog) == []
        failed = [r.getMessage() for r in caplog.records if "JSON nested too deeply" in
                  r.getMessage()]
        assert len(failed) == 1 and "\n" not in failed[0]
        # Junk names no user: the configured user's own budget is untouched.
        assert await first_message(sink, "127.0.0.2", f'{{"user":"alice","key":"{key}"}}') \
            == (AUTHENTICATED, None)


async def test_oversized_first_message_is_a_counted_failure(
    start_sink: StartSink, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A first message over max_client_message: closed with 1009 and counted; after exactly
    3 the address is locked out (the 4th counts a lockout, not a failure)."""
    caplog.set_level(logging.WARNING, logger="test.websocket")
    with trio.fail_after(20):
        sink = await auth_sink(start_sink, max_auth_failures=3, auth_failure_delay=0,
                               max_client_message=1024)
        big = '{"user":"alice","key":"' + "k" * 2000 + '"}'
        for attempt in range(1, 5):
            assert await first_message(sink, "127.0.0.2", big) == (None, 1009)
            await metric_reaches(sink, "auth_failures" if attempt <= 3 else "auth_lockouts",
                                 min(attempt, 3) if attempt <= 3 else 1)
        assert sink.metrics["auth_failures"] == 3
        assert sink.metrics["auth_lockouts"] == 1
        assert errors(caplog) == []
        assert await handshake_status(sink, "127.0.0.2", "alice", key) == 101


async def test_deep_json_in_session_is_one_bad_message(
    start_sink: StartSink, nursery: trio.Nursery, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An authenticated client's too-deep message: an error reply, counted, the client still
    served; no traceback."""
    caplog.set_level(logging.WARNING, logger="test.websocket")
    with trio.fail_after(20):
        sink = await auth_sink(start_sink)
        ws = await connect(nursery, sink, headers=basic("alice", key))
        await ws.send_message(DEEP)
        assert await recv(ws) == {"error": "JSON nested too deeply"}
        await send(ws, {"op": "ping"})
        assert await recv(ws) == {"op": "pong"}
        assert sink.metrics["bad_client_messages"] == 1
        assert sink.metrics["client_errors"] == 0
        assert errors(caplog) == []


async def test_oversized_message_in_session_is_counted(
    start_sink: StartSink, nursery: trio.Nursery, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="test.websocket")
    with trio.fail_after(20):
        sink = await auth_sink(start_sink, max_client_message=1024)
        ws = await connect(nursery, sink, headers=basic("alice", key))
        await sink.wait_for_clients(1)
        await ws.send_message("x" * 2000)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await ws.get_message()
        assert close_code(closed.value) == 1009
        await sink.wait_for_clients(0)
        assert sink.metrics["bad_client_messages"] == 1
        lines = [r.getMessage() for r in caplog.records if "over 1024 bytes" in r.getMessage()]
        assert len(lines) == 1
        assert errors(caplog) == []
