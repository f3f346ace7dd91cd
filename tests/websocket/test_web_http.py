"""The web view's HTTP side: only the known files, GET/HEAD only, bounded requests, security
headers on every answer, and a status that holds no secret."""

from __future__ import annotations

import json

import pytest
import trio
from server_process import free_port
from trio_websocket import open_websocket_url

from streamer_websocket.front import MAX_REQUEST_HEAD
from websocket.web_helpers import WEB_PIPE, Streamer, http_request, split_response

KEY = "s3cret-web-key-0123456789"
REDIS_PASSWORD = "redis-pw-never-shown-42"
NATS_USER = "nats-user-never-shown-17"
NATS_PASSWORD = "nats-pw-never-shown-93"
NATS_TOKEN = "nats-token-never-shown-58"
#: Every secret the pipelines of these tests are configured with (all through the
#: environment, the only place the plugins take them from).
SECRETS = (KEY, REDIS_PASSWORD, NATS_USER, NATS_PASSWORD, NATS_TOKEN)


@pytest.fixture
def web_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMER_WSS_AUTH_KEY", KEY)
    monkeypatch.setenv("STREAMER_REDIS_PASSWORD", REDIS_PASSWORD)
    monkeypatch.setenv("STREAMER_NATS_USER", NATS_USER)
    monkeypatch.setenv("STREAMER_NATS_PASSWORD", NATS_PASSWORD)
    monkeypatch.setenv("STREAMER_NATS_TOKEN_OTHER", NATS_TOKEN)


async def start(fake_bybit, plugin_manager, nursery, extra: str = "") -> tuple[Streamer, int]:
    port = free_port()
    toml = WEB_PIPE.format(ws=fake_bybit.ws_url("linear"), rest=fake_bybit.rest_url,
                           port=port) + extra
    streamer = Streamer(toml, plugin_manager)
    await streamer.start(nursery)
    return streamer, port


def get(path: str, method: str = "GET", extra: str = "") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()


async def test_known_files_only_with_security_headers(fake_bybit, plugin_manager, nursery,
                                                      web_env) -> None:
    with trio.fail_after(30):
        streamer, port = await start(fake_bybit, plugin_manager, nursery)
        status, headers, body = split_response(await http_request(port, get("/")))
        assert status == 200 and headers["content-type"].startswith("text/html")
        assert b'<meta name="streamer-auth" content="on">' in body
        assert b"<script>" not in body and b"<style" not in body and b" style=" not in body
        csp = headers["content-security-policy"]
        assert "script-src 'self'" in csp and "style-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assert headers["x-content-type-options"] == "nosniff"
        status, headers, body = split_response(
            await http_request(port, get("/lightweight-charts.standalone.production.js")))
        assert status == 200 and b"Lightweight Charts" in body[:300]
        status, headers, body = split_response(await http_request(port, get("/", "HEAD")))
        assert status == 200 and body == b"" and int(headers["content-length"]) > 1000
        for path, method, want in [("/../etc/passwd", "GET", 404), ("/app.py", "GET", 404),
                                   ("/", "POST", 405), ("/", "PUT", 405)]:
            status, headers, _ = split_response(await http_request(port, get(path, method)))
            assert status == want, (path, method)
            assert headers["x-content-type-options"] == "nosniff"
        status, _, _ = split_response(
            await http_request(port, get("/", extra="Content-Length: 5\r\n") + b"hello"))
        assert status == 413
        big = get("/", extra=f"X-Pad: {'a' * MAX_REQUEST_HEAD}\r\n")
        status, _, _ = split_response(await http_request(port, big))
        assert status == 431
        metrics = streamer.pipeline.node("wss").metrics
        assert metrics["web_requests"] == 3 and metrics["web_not_found"] == 2
        assert metrics["web_bad_requests"] == 3
        await streamer.stop()


async def test_page_requests_take_unauthenticated_places(fake_bybit, plugin_manager, nursery,
                                                         web_env) -> None:
    """A request is answered only while a place among the unauthenticated connections is
    free (the WebSocket's own limit): one address holding them all is answered 503."""
    with trio.fail_after(30):
        streamer, port = await start(fake_bybit, plugin_manager, nursery,
                                     "max_unauthenticated = 8\n"
                                     "max_unauthenticated_per_address = 1\n")
        sink = streamer.pipeline.node("wss")
        async with open_websocket_url(f"ws://127.0.0.1:{port}/") as ws:
            while sink.unauthenticated != 1:
                await trio.sleep(0.01)
            status, headers, _ = split_response(await http_request(port, get("/")))
            assert status == 503 and headers["x-content-type-options"] == "nosniff"
            assert sink.metrics["rejected_unauthenticated"] == 1
            await ws.send_message(json.dumps({"user": "viewer", "key": KEY}))
            assert json.loads(await ws.get_message()) == {"status": "authenticated"}
            status, _, _ = split_response(await http_request(port, get("/")))
            assert status == 200
        await streamer.stop()


#: A Redis URL (the password from the environment) and two NATS sinks (user and password,
#: a token), all pointed at ports where nothing listens: their readiness reasons (shown by
#: the status) are connection errors about those URLs.
DSN_SINKS = """
[[sinks]]
name = "redis"
type = "redis"
inputs = ["bybit"]
url = "redis://127.0.0.1:{redis_port}/0"
shutdown_timeout = 0.2

[[sinks]]
name = "nats"
type = "nats"
inputs = ["bybit"]
url = "nats://127.0.0.1:{nats_port}"
connect_timeout = 0.2
shutdown_timeout = 0.2

[[sinks]]
name = "nats_token"
type = "nats"
inputs = ["bybit"]
url = ["nats://localhost:{nats_port}", "tls://127.0.0.1:{nats_port}"]
token_env = "STREAMER_NATS_TOKEN_OTHER"
user_env = "STREAMER_NATS_NO_USER"
password_env = "STREAMER_NATS_NO_PASSWORD"
connect_timeout = 0.2
shutdown_timeout = 0.2
"""


def all_failed(status: dict) -> bool:
    nodes = {n["name"]: n for n in status["nodes"]}
    redis = nodes["redis"]["parts"]
    return (bool(redis) and not redis[0]["ready"]
            and all(nodes[n]["counters"].get("connect_failures", 0) >= 1
                    for n in ("nats", "nats_token")))


async def test_status_holds_no_secret(fake_bybit, plugin_manager, nursery, web_env) -> None:
    """Every status payload, read while a Redis sink and two NATS sinks fail to reach their
    servers, holds none of the configured secrets: the WebSocket key, the Redis password,
    the NATS user, password and token."""
    with trio.fail_after(30):
        redis_port = free_port()
        streamer, port = await start(fake_bybit, plugin_manager, nursery, DSN_SINKS.format(
            redis_port=redis_port, nats_port=free_port()))
        await fake_bybit.wait_subscribed("linear", ["publicTrade.BTCUSDT"])
        async with open_websocket_url(f"ws://127.0.0.1:{port}/") as ws:
            await ws.send_message(json.dumps({"user": "viewer", "key": KEY}))
            assert json.loads(await ws.get_message()) == {"status": "authenticated"}
            await ws.send_message('{"op": "subscribe", "args": [{"data_type": "ticker"}]}')
            payloads: list[str] = []
            # Until every sink has failed to connect at least once, and 3 payloads at least.
            while len(payloads) < 3 or not all_failed(json.loads(payloads[-1])["data"]):
                await ws.send_message('{"op": "status"}')
                while not (message := await ws.get_message()).startswith('{"op":"status"'):
                    pass
                payloads.append(message)
                await trio.sleep(0.5)
        await streamer.stop()
    for text in payloads:
        assert [s for s in SECRETS if s in text] == []
    status = json.loads(payloads[-1])["data"]
    nodes = {n["name"]: n for n in status["nodes"]}
    assert set(nodes) == {"bybit", "klines", "wss", "redis", "nats", "nats_token"}
    assert f"127.0.0.1:{redis_port}" in nodes["redis"]["parts"][0]["reason"]
    assert nodes["bybit"]["parts"][0]["ready"]
    assert status["process"]["rss_bytes"] > 0
