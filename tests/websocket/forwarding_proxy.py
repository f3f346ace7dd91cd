"""A tiny reverse proxy for the WebSocket sink, as Traefik or nginx stand in front of it.

It listens on 127.0.0.1, reads each request's head (bounded), adds the client's address to
the forwarding header the way nginx's ``$proxy_add_x_forwarded_for`` does (appended to what
the client sent, so a client's own entries stay to the left), opens its own connection to
the sink from 127.0.0.1 and then copies bytes both ways until either side ends. Every client
connection reaches the sink from the proxy's address, as in the shipped Traefik setup.
"""

from __future__ import annotations

import trio

MAX_HEAD = 16 * 1024


def add_forwarding(head: bytes, client: str, header: str) -> bytes:
    """``head`` (request line and headers, no blank line) with ``client`` appended to
    ``header`` ("x-forwarded-for" or "forwarded"), or that header added."""
    entry = f"for={client}" if header == "forwarded" else client
    lines = head.split(b"\r\n")
    for i, line in enumerate(lines[1:], start=1):
        name, _, value = line.partition(b":")
        if name.strip().lower() == header.encode():
            lines[i] = name + b": " + value.strip() + b", " + entry.encode()
            return b"\r\n".join(lines)
    return b"\r\n".join([*lines, f"{header}: {entry}".encode()])


class ForwardingProxy:
    def __init__(self, upstream_port: int, header: str = "x-forwarded-for") -> None:
        self.upstream_port = upstream_port
        self.header = header
        self.port: int | None = None
        #: Client connections handled so far.
        self.connections = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
                  ) -> None:
        (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listener.socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._handle, [listener])

    async def _handle(self, downstream: trio.SocketStream) -> None:
        self.connections += 1
        client = downstream.socket.getpeername()[0]
        async with downstream:
            buffered = b""
            while b"\r\n\r\n" not in buffered:
                if len(buffered) > MAX_HEAD:
                    return
                try:
                    chunk = await downstream.receive_some(4096)
                except trio.BrokenResourceError:
                    return
                if not chunk:
                    return
                buffered += chunk
            head, _, rest = buffered.partition(b"\r\n\r\n")
            head = add_forwarding(head, client, self.header)
            upstream = await trio.open_tcp_stream("127.0.0.1", self.upstream_port)
            async with upstream:
                await upstream.send_all(head + b"\r\n\r\n" + rest)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_copy, downstream, upstream, nursery.cancel_scope)
                    nursery.start_soon(_copy, upstream, downstream, nursery.cancel_scope)


async def _copy(source: trio.SocketStream, target: trio.SocketStream,
                done: trio.CancelScope) -> None:
    """Copy until ``source`` ends or either side breaks; then end both directions."""
    try:
        while chunk := await source.receive_some(65536):
            await target.send_all(chunk)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    done.cancel()
