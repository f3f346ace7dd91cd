"""The writer's trio-native Redis connection: packing, replies, auth, db, failures."""

from __future__ import annotations

import pytest
import redis
import trio
from redis_server import RedisServer
from sink_helpers import buffered, make_context, running, trade

from streamer import Inbox
from streamer_redis.resp import (
    MAX_REPLY_BYTES,
    MAX_REPLY_DEPTH,
    TrioConnection,
    _parse,
    pack,
    supports,
)
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
                assert sink.writer.link.direct() is not None
        assert server.client().xlen("bybit-streamer:stream:linear:trades") == 1  # one envelope


@pytest.mark.parametrize("garbage", [b":12x\r\n", b"$" + b"9" * 30 + b"\r\n", b"!3\r\n",
                                     b"*1\r\n" * (MAX_REPLY_DEPTH + 1) + b":1\r\n"])
def test_a_malformed_reply_is_a_protocol_error(garbage):
    with pytest.raises(redis.InvalidResponse):
        _parse(bytearray(garbage), 0)


async def _serve_once(answer: bytes, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """A loopback server that reads one request and answers ``answer`` (then waits)."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    stream = await listeners[0].accept()
    await stream.receive_some(65536)
    try:
        await stream.send_all(answer)
    except trio.BrokenResourceError:
        pass  # the client hung up on the answer: what the test expects of it
    await trio.sleep_forever()


@pytest.mark.parametrize("answer", [
    # A bulk reply past the bound: refused once the bytes held pass it, not after a timeout.
    b"$%d\r\n" % (4 * MAX_REPLY_BYTES) + b"x" * (MAX_REPLY_BYTES + 200_000),
    b"+OK\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
    b"+OK\r\n:not-a-number\r\n",
])
async def test_a_server_that_answers_too_much_or_garbage_costs_the_connection(answer):
    async with trio.open_nursery() as nursery:
        port = await nursery.start(_serve_once, answer)
        conn = TrioConnection(redis.Redis(port=port, socket_timeout=60))
        with trio.fail_after(30), pytest.raises((redis.ConnectionError, redis.InvalidResponse)):
            await conn.execute([("PING",), ("PUBLISH", "c", "m")])
        assert conn._stream is None  # closed: the next write starts on a new connection
        nursery.cancel_scope.cancel()


async def test_a_sink_whose_server_answers_garbage_retries_and_keeps_its_events(
        autojump_clock):
    """A protocol error is a failed write like a lost connection: counted, retried on a new
    connection, the events kept in the buffer; the sink does not die."""
    async def garbage_server(task_status=trio.TASK_STATUS_IGNORED) -> None:
        async def answer(stream: trio.SocketStream) -> None:
            while await stream.receive_some(65536):
                await stream.send_all(b"?what\r\n")

        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(answer, listeners)

    async with trio.open_nursery() as nursery:
        port = await nursery.start(garbage_server)
        sink = RedisSink(RedisSinkConfig(port=port, stream=True), make_context("redis"))
        inbox = Inbox("test", 100, "block")
        await nursery.start(sink.run, inbox)
        await inbox.put([trade(1), trade(2)])
        with trio.fail_after(30):
            while sink.context.metrics.snapshot().get("write_failures", 0) < 3:
                await trio.sleep(0.05)
        assert buffered(sink) == 2 and sink.writer.written_events == 0
        nursery.cancel_scope.cancel()
