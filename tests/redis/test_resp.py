"""The writer's trio-native Redis connection: packing, replies, auth, db, failures."""

from __future__ import annotations

import pytest
import redis
import trio
from redis_server import RedisServer
from sink_helpers import make_context, running, trade

from streamer_redis.resp import TrioConnection, _parse, pack, supports
from streamer_redis.sink import RedisSink, RedisSinkConfig


def test_pack_is_what_redis_py_sends():
    commands = [("PUBLISH", "ch", b"x\r\ny"), ("SET", "k", 1.5, "EX", 5), ("HSET", "h", "é", 3)]
    conn = redis.connection.Connection()
    assert pack(commands) == b"".join(conn.pack_commands(commands))


def test_replies_of_every_resp2_type():
    buf = bytearray(b"+OK\r\n:42\r\n$3\r\nabc\r\n$-1\r\n*2\r\n:1\r\n$1\r\nx\r\n-ERR boom\r\n")
    pos, replies = 0, []
    while pos < len(buf):
        reply, pos = _parse(buf, pos)
        replies.append(reply)
    assert replies[:5] == [b"OK", 42, b"abc", None, [1, b"x"]]
    assert isinstance(replies[5], redis.ResponseError) and str(replies[5]) == "ERR boom"


def test_tls_stays_on_redis_py():
    assert supports(redis.Redis(port=1))
    assert supports(redis.Redis.from_url("unix:///tmp/r.sock?db=1"))
    assert not supports(redis.Redis.from_url("rediss://127.0.0.1:1/0"))


async def test_auth_db_and_a_refused_command():
    with RedisServer(password="pw", unix_socket=True) as server:
        client = redis.Redis.from_url(f"unix://{server.unix_socket}?db=3", password="pw")
        conn = TrioConnection(client)
        with trio.fail_after(10):
            replies = await conn.execute([("SET", "k", "v"), ("INCR", "k"), ("PING",)])
        assert replies[0] == b"OK" and replies[2] == b"PONG"
        assert isinstance(replies[1], redis.ResponseError)
        assert server.client(db=3).get("k") == b"v"
        conn.close()

        bad = TrioConnection(redis.Redis.from_url(f"unix://{server.unix_socket}",
                                                  password="wrong"))
        with trio.fail_after(10), pytest.raises(redis.AuthenticationError):
            await bad.execute([("PING",)])


async def test_acl_user():
    with RedisServer(password="pw") as server:
        admin = server.client()
        admin.acl_setuser("writer", enabled=True, passwords=["+wpw"], keys=["*"],
                          commands=["+@all"])
        conn = TrioConnection(redis.Redis(port=server.port, username="writer", password="wpw"))
        with trio.fail_after(10):
            assert await conn.execute([("SET", "a", "1")]) == [b"OK"]
        conn.close()


async def test_a_server_gone_is_a_connection_error_and_the_next_write_reconnects():
    with RedisServer() as server:
        port = server.port
        conn = TrioConnection(redis.Redis(port=port, socket_connect_timeout=1.0))
        with trio.fail_after(10):
            assert await conn.execute([("PING",)]) == [b"PONG"]
    with trio.fail_after(10), pytest.raises(redis.ConnectionError):
        await conn.execute([("PING",)])
    with RedisServer(port=port), trio.fail_after(10):
        assert await conn.execute([("PING",)]) == [b"PONG"]


async def test_the_sink_writes_through_it():
    with RedisServer() as server:
        sink = RedisSink(RedisSinkConfig(port=server.port, stream=True), make_context("redis"))
        with trio.fail_after(10):
            async with running(sink) as inbox:
                await inbox.put([trade(1), trade(2)])
                assert sink.writer._direct_connection() is not None
        assert server.client().xlen("bybit-streamer:stream:linear:trades") == 1  # one envelope
