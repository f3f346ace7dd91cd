"""The ops listener bounds what clients send: connections, request head bytes, time; and
answers what it does not serve with a status that says why."""

from __future__ import annotations

import json
import time

import pytest
import trio

from ops.httpget import get, get_json
from ops.opsserver import TOML, connect_from, serving, wait_until
from streamer import _metrics_http as metrics_http
from streamer._config import load_config_text
from streamer._metrics_http import (
    HEALTH_MAX_LAG,
    MAX_REQUEST_BYTES,
    OpsLimits,
    OpsServer,
    parse_address,
    serve_ops,
)
from streamer._plugins import load_plugin_manager
from streamer._runtime import Pipeline


@pytest.fixture
async def ops():
    server: OpsServer
    async with serving() as server:
        yield server


async def test_oversized_request_head_is_refused(ops) -> None:
    status, body = await get(ops.port, "", request=b"GET /metrics HTTP/1.1\r\nX: "
                             + b"a" * (MAX_REQUEST_BYTES + 100))
    assert status == 431 and str(MAX_REQUEST_BYTES).encode() in body
    # Just under the ceiling is fine.
    pad = b"a" * (MAX_REQUEST_BYTES - 100)
    status, _ = await get(ops.port, "", request=b"GET /healthz HTTP/1.1\r\nX: " + pad + b"\r\n\r\n")
    assert status == 200


async def test_a_client_that_never_finishes_its_request_times_out(ops, autojump_clock) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", ops.port)
    start = trio.current_time()
    await stream.send_all(b"GET /metrics HTTP/1.1\r\n")
    reply = b""
    while chunk := await stream.receive_some(4096):
        reply += chunk
    assert reply.startswith(b"HTTP/1.1 408")
    assert trio.current_time() - start == pytest.approx(OpsLimits().head_timeout, abs=1e-6)
    await stream.aclose()


async def test_a_connection_past_the_ceiling_takes_the_place_of_the_oldest(
        ops, autojump_clock) -> None:
    limits = ops.limits
    per_address = limits.max_connections_per_address
    sources = [f"127.0.0.{2 + i}" for i in range(limits.max_connections // per_address)]
    idle = [await connect_from(source, ops.port) for source in sources
            for _ in range(per_address)]
    await wait_until(lambda: ops.connections == limits.max_connections)
    assert ops.admission.evicted == 0
    newest = await connect_from("127.0.0.200", ops.port)
    assert await idle[0].receive_some(100) == b""  # the oldest, closed unanswered
    assert (ops.connections, ops.admission.evicted) == (limits.max_connections, 1)
    # A probe takes the place of the next oldest and is answered.
    assert (await get(ops.port, "/healthz"))[0] == 200
    assert await idle[1].receive_some(100) == b""
    assert ops.admission.evicted == 2
    for stream in (*idle, newest):
        await stream.aclose()


async def test_what_is_not_served_says_why(ops) -> None:
    assert (await get(ops.port, "/nope"))[0] == 404
    assert (await get(ops.port, "", request=b"POST /metrics HTTP/1.1\r\n\r\n"))[0] == 405
    assert (await get(ops.port, "", request=b"hello\r\n\r\n"))[0] == 400
    status, body = await get(ops.port, "", request=b"HEAD /healthz HTTP/1.1\r\n\r\n")
    assert status == 200 and body == b""
    # Not started: /readyz names the pipeline and the source resolving its symbols.
    status, doc = await get_json(ops.port, "/readyz")
    assert status == 503
    assert doc["not_ready"]["pipeline"] == ["starting"]
    assert doc["not_ready"]["bybit.linear"] == ["bybit.linear: resolving symbols"]


async def test_healthz_reports_a_blocked_event_loop(ops) -> None:
    # Real time on purpose: the lag is how late the real loop ran (blocking code in a task).
    await trio.sleep(0.6)
    time.sleep(HEALTH_MAX_LAG + 0.5)
    await trio.sleep(0.1)
    status, body = await get(ops.port, "/healthz")
    assert status == 503, body
    assert json.loads(body)["status"] == "event loop lagging"


def test_address_forms() -> None:
    assert parse_address("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert parse_address(":9464") == ("0.0.0.0", 9464)
    assert parse_address("[::1]:9464") == ("::1", 9464)
    for bad in ("9464", "host:", "host:99999", "host:x"):
        with pytest.raises(ValueError, match="expected host:port"):
            parse_address(bad)


async def test_port_in_use_is_fatal(ops) -> None:
    pm = load_plugin_manager()
    pipeline = Pipeline(load_config_text(TOML, pm, environ={}), pm)
    with pytest.raises(metrics_http.FatalError, match="address already in use"):
        await serve_ops(pipeline, f"127.0.0.1:{ops.port}")


def test_config_checks_the_metrics_settings() -> None:
    from streamer._config import ConfigError

    pm = load_plugin_manager()
    for settings, message in (('metrics = "9464"', "expected host:port"),
                              ("ready_max_data_age = 0",
                               "ready_max_data_age: expected more than 0"),
                              ("metrics_max_connections_per_address = 0",
                               "metrics_max_connections_per_address: expected at least 1"),
                              ("metrics_max_connections = 4",
                               r"metrics_max_connections \(4\) must be at least "
                               r"metrics_max_connections_per_address \(8\)"),
                              ("metrics_head_timeout = 0",
                               "metrics_head_timeout: expected more than 0"),
                              ("metrics_request_timeout = 2",
                               r"metrics_request_timeout \(2\) must be at least "
                               r"metrics_head_timeout \(5\)")):
        with pytest.raises(ConfigError, match=message):
            load_config_text(f"[streamer]\n{settings}\n{TOML}", pm, environ={})
    config = load_config_text(f'[streamer]\nmetrics = "127.0.0.1:9464"\n{TOML}', pm,
                              environ={})
    assert config.settings.metrics == "127.0.0.1:9464"
    assert config.settings.ready_max_data_age == 60.0
    # The settings' defaults are the listener's.
    assert OpsLimits.from_settings(config.settings) == OpsLimits()
    config = load_config_text(
        "[streamer]\nmetrics_max_connections = 10\nmetrics_max_connections_per_address = 2\n"
        f"metrics_head_timeout = 1.5\nmetrics_request_timeout = 3\n{TOML}", pm, environ={})
    assert OpsLimits.from_settings(config.settings) == OpsLimits(10, 2, 1.5, 3.0)
