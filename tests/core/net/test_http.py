"""streamer.net.get_json bounds what a server can make it buffer, whatever the body's framing."""

from __future__ import annotations

import pytest
import trio

from streamer.net import get_json


class RawServer:
    """Answers every request with ``answer`` bytes, then keeps the connection open."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.port = 0

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED):
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, stream: trio.SocketStream) -> None:
        async with stream:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return
                request += chunk
            try:
                await stream.send_all(self.answer)
                await trio.sleep_forever()  # never ends the body: only the cap can
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass


CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


async def fetch(answer: bytes):
    server = RawServer(answer)
    result: object
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        try:
            result = await get_json(f"http://127.0.0.1:{server.port}/x", timeout=10)
        except Exception as exc:  # raised below, outside the nursery's exception group
            result = exc
        nursery.cancel_scope.cancel()
    if isinstance(result, Exception):
        raise result
    return result


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        # a 1 TB chunk declared, 1 MiB of it sent: refused at the size line, not after it
        (CHUNKED + b"FFFFFFFFFF\r\n" + b"x" * (1 << 20), "response body too large"),
        # small chunk, then one that would take the body past 64 MiB
        (CHUNKED + b"1\r\na\r\n4000000\r\n" + b"x" * (1 << 20), "response body too large"),
        # a chunk-size line that never ends
        (CHUNKED + b"1" * (1 << 20), "chunk size line too long"),
        (CHUNKED + b"zz\r\n", "bad chunk size"),
    ],
    ids=["huge_chunk", "over_the_cap", "endless_size_line", "not_hex"],
)
async def test_chunked_body_is_capped_while_reading(answer, message, autojump_clock):
    with pytest.raises(ConnectionError, match=message):
        await fetch(answer)


async def test_chunked_body_with_extensions_decodes(autojump_clock):
    body = CHUNKED + b"3;name=value\r\n{\"a\r\n5\r\n\": [1\r\n2\r\n]}\r\n0\r\n\r\n"
    assert await fetch(body) == {"a": [1]}


async def test_content_length_over_the_cap_is_refused(autojump_clock):
    with pytest.raises(ConnectionError, match="response body too large"):
        await fetch(b"HTTP/1.1 200 OK\r\nContent-Length: 1099511627776\r\n\r\n{")
