"""Behind a reverse proxy: limits count the client the trusted proxy names, never the proxy.

A real forwarding proxy (:mod:`websocket.forwarding_proxy`) runs on 127.0.0.1 in front of the
sink; clients reach it from distinct loopback addresses (127.0.0.x), so the sink sees every
connection come from 127.0.0.1 and tells clients apart only by the forwarded header.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import trio

from streamer_websocket.config import WebSocketConfig
from streamer_websocket.forwarded import ClientAddresses
from websocket.forwarding_proxy import ForwardingProxy
from websocket.helpers import (
    StartSink,
    answer,
    basic,
    client_frame,
    raw_handshake,
    read_close_code,
    send_all,
    stalled_client,
)

KEY_ENV = "STREAMER_TEST_WS_PROXY_KEY"
KEY = "pr0xy-key"
AUTHENTICATED = '{"status":"authenticated"}'


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, KEY)
    return KEY


async def proxied_sink(nursery: trio.Nursery, start_sink: StartSink,
                       header: str = "x-forwarded-for",
                       **options: Any) -> tuple[Any, ForwardingProxy]:
    options.setdefault("trusted_proxies", ["127.0.0.1/32"])
    sink, _ = await start_sink(auth_user="alice", auth_key_env=KEY_ENV, forwarded_header=header,
                               **options)
    proxy = ForwardingProxy(sink.port, header)
    await nursery.start(proxy.run)
    return sink, proxy


async def handshake_status(sink: Any, port: int | None, source: str, user: str, key: str,
                           extra: list[tuple[bytes, bytes]] | None = None) -> int:
    """The HTTP status a basic-auth handshake from ``source`` gets (101, 401, 429)."""
    sock, response = await raw_handshake(sink, source=source, port=port,
                                         headers=basic(user, key) + (extra or []))
    sock.close()
    return int(response.split()[1])


async def first_message(sink: Any, port: int | None, source: str,
                        text: str) -> tuple[str | None, int | None]:
    """First-message auth from ``source``: the reply and the close code (None: still open)."""
    sock, response = await raw_handshake(sink, source=source, port=port)
    assert response.startswith(b"HTTP/1.1 101"), response
    assert await send_all(sock, client_frame(text))
    reply, code = await answer(sock)
    sock.close()
    return reply, code


async def test_wrong_keys_behind_the_proxy_lock_out_only_the_guesser(
    start_sink: StartSink, nursery: trio.Nursery, key: str
) -> None:
    """10 wrong keys through the proxy lock out their sender after exactly 10; another client
    through the same proxy still gets in with the right key (before: 429 for everyone)."""
    with trio.fail_after(20):
        sink, proxy = await proxied_sink(nursery, start_sink, auth_failure_delay=0)
        for _ in range(10):
            assert await handshake_status(sink, proxy.port, "127.0.0.2", "alice", "guess") == 401
        assert sink.metrics["auth_failures"] == 10
        assert await handshake_status(sink, proxy.port, "127.0.0.2", "alice", "guess") == 429
        # The locked-out address is refused even with the right key (docs/plugins/websocket.md).
        assert await handshake_status(sink, proxy.port, "127.0.0.2", "alice", key) == 429
        assert sink.metrics["auth_lockouts"] == 2
        # Another client behind the same proxy: admitted, by header and by first message.
        assert await handshake_status(sink, proxy.port, "127.0.0.3", "alice", key) == 101
        reply, code = await first_message(sink, proxy.port, "127.0.0.4",
                                          f'{{"user":"alice","key":"{key}"}}')
        assert (reply, code) == (AUTHENTICATED, None)
        assert sink.metrics["auth_failures"] == 10
        assert proxy.connections == 14


async def test_a_client_cannot_spoof_its_way_past_the_lockout(
    start_sink: StartSink, nursery: trio.Nursery, key: str
) -> None:
    """Entries a client writes itself are ignored: a new X-Forwarded-For on every try, sent
    straight to the sink or through the proxy, is still locked out after exactly 10."""
    with trio.fail_after(20):
        sink, proxy = await proxied_sink(nursery, start_sink, auth_failure_delay=0)
        for port, source in ((sink.port, "127.0.0.5"), (proxy.port, "127.0.0.6")):
            for i in range(10):
                spoof = [(b"X-Forwarded-For", f"10.0.0.{i}".encode())]
                assert await handshake_status(sink, port, source, "alice", "guess",
                                              spoof) == 401
            spoof = [(b"X-Forwarded-For", b"10.0.0.99")]
            assert await handshake_status(sink, port, source, "alice", key, spoof) == 429
        assert sink.metrics["auth_failures"] == 20
        assert sink.metrics["auth_lockouts"] == 2


async def test_idle_sockets_behind_the_proxy_take_only_their_senders_places(
    start_sink: StartSink, nursery: trio.Nursery, key: str
) -> None:
    """One client's idle sockets fill its own 4 places, never the proxy's: the 5th is refused
    with 1013 and a first-message user through the same proxy authenticates (before: all
    were counted as 127.0.0.1, whose 4 places the attacker held)."""
    with trio.fail_after(20):
        sink, proxy = await proxied_sink(nursery, start_sink, auth_timeout=60)
        idle = [await stalled_client(sink, source="127.0.0.2", port=proxy.port)
                for _ in range(4)]
        while sink.unauthenticated < 4:
            await trio.sleep(0.001)
        extra = await stalled_client(sink, source="127.0.0.2", port=proxy.port)
        assert await read_close_code(extra) == 1013
        reply, code = await first_message(sink, proxy.port, "127.0.0.3",
                                          f'{{"user":"alice","key":"{key}"}}')
        assert (reply, code) == (AUTHENTICATED, None)
        assert sink.metrics["rejected_unauthenticated"] == 1
        assert sink.unauthenticated == 4
        for sock in [*idle, extra]:
            sock.close()


async def test_forwarded_header_behind_the_proxy(
    start_sink: StartSink, nursery: trio.Nursery, key: str
) -> None:
    """With forwarded_header = "forwarded" the RFC 7239 header is read (and X-Forwarded-For,
    which that proxy passes through untouched, is not)."""
    with trio.fail_after(20):
        sink, proxy = await proxied_sink(nursery, start_sink, header="forwarded",
                                         max_auth_failures=3, auth_failure_delay=0)
        for i in range(3):
            spoof = [(b"X-Forwarded-For", f"10.0.0.{i}".encode())]
            assert await handshake_status(sink, proxy.port, "127.0.0.7", "alice", "guess",
                                          spoof) == 401
        assert await handshake_status(sink, proxy.port, "127.0.0.7", "alice", key) == 429
        assert await handshake_status(sink, proxy.port, "127.0.0.8", "alice", key) == 101


async def test_untrusted_proxy_is_counted_as_itself(
    start_sink: StartSink, nursery: trio.Nursery, key: str
) -> None:
    """Without trusted_proxies the proxy's header is ignored: its clients share its budget
    (the reason the compose files set trusted_proxies)."""
    with trio.fail_after(20):
        sink, proxy = await proxied_sink(nursery, start_sink, trusted_proxies=[],
                                         max_auth_failures=3, auth_failure_delay=0)
        for _ in range(3):
            assert await handshake_status(sink, proxy.port, "127.0.0.2", "alice", "guess") == 401
        assert await handshake_status(sink, proxy.port, "127.0.0.3", "alice", key) == 429


@pytest.mark.parametrize(
    ("peer", "headers", "expected"),
    [
        # Right-most address that is not a trusted proxy; a client's own entries are left.
        ("10.0.0.1", [(b"X-Forwarded-For", b"6.6.6.6, 203.0.113.7")], ("203.0.113.7", False)),
        ("10.0.0.1", [(b"x-forwarded-for", b"6.6.6.6, 203.0.113.7, 10.0.0.2")],
         ("203.0.113.7", False)),
        # Two header lines read as one list, in order.
        ("10.0.0.1", [(b"X-Forwarded-For", b"203.0.113.7"), (b"X-Forwarded-For", b"10.0.0.3")],
         ("203.0.113.7", False)),
        # Ports and brackets dropped; IPv4-mapped IPv6 unwrapped.
        ("10.0.0.1", [(b"X-Forwarded-For", b"[2001:db8::1]:443")], ("2001:db8::1", False)),
        ("10.0.0.1", [(b"X-Forwarded-For", b"::ffff:192.0.2.1")], ("192.0.2.1", False)),
        # From an untrusted peer the header is ignored.
        ("192.0.2.50", [(b"X-Forwarded-For", b"203.0.113.7")], ("192.0.2.50", False)),
        # No header from the proxy: the proxy itself.
        ("10.0.0.1", [], ("10.0.0.1", False)),
        # Garbage where the client should be: the proxy, flagged, never an invented name.
        ("10.0.0.1", [(b"X-Forwarded-For", b"203.0.113.7, unknown")], ("10.0.0.1", True)),
        # Every hop trusted: the left-most.
        ("10.0.0.1", [(b"X-Forwarded-For", b"10.0.0.9, 10.0.0.3")], ("10.0.0.9", False)),
        # The other header is not read.
        ("10.0.0.1", [(b"Forwarded", b"for=203.0.113.7")], ("10.0.0.1", False)),
    ],
)
def test_client_address_from_x_forwarded_for(peer: str, headers: list, expected: tuple) -> None:
    assert ClientAddresses(["10.0.0.0/24"], "x-forwarded-for").client_of(peer, headers) \
        == expected


def test_client_address_from_forwarded() -> None:
    addresses = ClientAddresses(["10.0.0.0/24", "fd00::/8"], "forwarded")
    value = b'for=6.6.6.6;proto=https, For="[2001:db8:cafe::17]:4711";by=x, for=fd00::1'
    assert addresses.client_of("10.0.0.1", [(b"Forwarded", value)]) \
        == ("2001:db8:cafe::17", False)
    assert addresses.client_of("10.0.0.1", [(b"Forwarded", b"for=_hidden")]) \
        == ("10.0.0.1", True)


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"trusted_proxies": ["10.0.0.0/33"]}, "trusted_proxies: '10.0.0.0/33' is not"),
        ({"trusted_proxies": ["10.0.0.1/24"]}, "has host bits set"),
        ({"trusted_proxies": ["traefik"]}, "trusted_proxies: 'traefik' is not"),
        ({"max_unauthenticated": 16, "max_unauthenticated_per_address": 4},
         "max_unauthenticated_per_address: expected at most max_unauthenticated / 8 (2), "
         "got 4"),
    ],
)
def test_config_refuses(options: dict, error: str) -> None:
    with pytest.raises(ValueError, match=re.escape(error)):
        WebSocketConfig(**options)


def test_config_accepts_addresses_and_networks() -> None:
    config = WebSocketConfig(trusted_proxies=["172.31.250.2", "10.0.0.0/8", "fd00::/8"],
                             max_unauthenticated=16, max_unauthenticated_per_address=2)
    assert config.trusted_proxies == ["172.31.250.2", "10.0.0.0/8", "fd00::/8"]
