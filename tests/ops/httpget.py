"""A raw HTTP GET over trio for the ops-listener tests (status, headers, body)."""

from __future__ import annotations

import json
from typing import Any

import trio


async def get(port: int, path: str, *, request: bytes | None = None) -> tuple[int, bytes]:
    """Send ``GET path`` (or the raw ``request``) to 127.0.0.1:port; (status, body)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(request or f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def get_json(port: int, path: str) -> tuple[int, Any]:
    status, body = await get(port, path)
    return status, json.loads(body)
