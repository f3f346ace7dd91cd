"""A minimal HTTP/1.1 JSON GET client for trio (exchange REST APIs, health checks).

The core must stay trio-only, and the plugins only ever need ``GET`` of small JSON documents,
so a few dozen lines over ``trio.open_tcp_stream`` beat adding an HTTP client dependency.
Handles ``Content-Length``, ``chunked`` and read-until-close bodies, http and https.

Bounds: headers 1 MiB, body ``MAX_BODY`` (64 MiB) however it is framed -- a ``chunked``
body is checked against the cap when each chunk size is read, before the chunk is, and a
chunk-size line longer than 1 KiB is refused -- and ``timeout`` seconds for the whole request.
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import urlencode, urlsplit

import msgspec
import trio

MAX_BODY = 64 * 1024 * 1024
_MAX_HEADERS = 1024 * 1024
_MAX_CHUNK_LINE = 1024  # "<hex size>[;extensions]" of one chunk
_decoder = msgspec.json.Decoder()
_ssl_context: ssl.SSLContext | None = None


class HttpError(Exception):
    """The server answered with a status outside 2xx, or with something that is not JSON."""

    def __init__(self, url: str, status: int, body: bytes, reason: str = "") -> None:
        self.url = url
        self.status = status
        self.body = body
        snippet = body[:200].decode("utf-8", "replace")
        super().__init__(f"GET {url}: HTTP {status} {reason}".rstrip() + f": {snippet}")


def default_ssl_context() -> ssl.SSLContext:
    """The process-wide client context over the system trust store (certificate and host
    name checked), built once: loading the store costs milliseconds per context. Used for
    https:// here and for wss:// by the plugins when no CA bundle is configured."""
    global _ssl_context
    if _ssl_context is None:
        _ssl_context = ssl.create_default_context()
    return _ssl_context


async def _read_response(stream: trio.abc.Stream) -> tuple[int, str, dict[str, str], bytes]:
    buf = bytearray()
    while b"\r\n\r\n" not in buf:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise ConnectionError("connection closed before the response headers")
        buf += chunk
        if len(buf) > _MAX_HEADERS:
            raise ConnectionError("response headers too large")
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise ConnectionError(f"not an HTTP response: {lines[0][:80]!r}")
    status = int(parts[1])
    reason = parts[2] if len(parts) > 2 else ""
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = bytearray(rest)

    async def fill(n: int) -> None:
        while len(body) < n:
            chunk = await stream.receive_some(65536)
            if not chunk:
                raise ConnectionError("connection closed in the middle of the body")
            body.extend(chunk)

    if "chunked" in headers.get("transfer-encoding", "").lower():
        out = bytearray()
        while True:
            end = body.find(b"\r\n")
            while end < 0:
                if len(body) > _MAX_CHUNK_LINE:
                    raise ConnectionError("chunk size line too long")
                await fill(len(body) + 1)
                end = body.find(b"\r\n")
            if end > _MAX_CHUNK_LINE:
                raise ConnectionError("chunk size line too long")
            try:
                size = int(bytes(body[:end]).split(b";")[0], 16)
            except ValueError:
                raise ConnectionError(f"bad chunk size {bytes(body[:40])!r}") from None
            if size < 0 or len(out) + size > MAX_BODY:
                raise ConnectionError(
                    f"response body too large: a chunk of {size} bytes after {len(out)} "
                    f"(limit {MAX_BODY})"
                )
            start = end + 2
            await fill(start + size + 2)
            if size == 0:
                break
            out += body[start : start + size]
            del body[: start + size + 2]  # the raw buffer holds one chunk at most
        return status, reason, headers, bytes(out)
    if "content-length" in headers:
        length = int(headers["content-length"])
        if length > MAX_BODY:
            raise ConnectionError("response body too large")
        await fill(length)
        return status, reason, headers, bytes(body[:length])
    while True:
        chunk = await stream.receive_some(65536)
        if not chunk:
            break
        body += chunk
        if len(body) > MAX_BODY:
            raise ConnectionError("response body too large")
    return status, reason, headers, bytes(body)


async def get_json(
    url: str,
    params: dict[str, Any] | None = None,
    *,
    timeout: float = 10.0,
    ssl_context: ssl.SSLContext | None = None,
) -> Any:
    """GET ``url`` (with ``params`` as the query string) and decode the JSON body.

    Raises :class:`HttpError` for a non-2xx status or a body that does not decode (whatever
    the decoder raised, so a hostile body never raises anything else), ``OSError``
    for connection trouble and ``trio.TooSlowError`` past ``timeout`` seconds in all.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"unsupported URL scheme in {url!r}")
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = parts.path or "/"
    query = parts.query
    if params:
        extra = urlencode({k: v for k, v in params.items() if v is not None})
        query = f"{query}&{extra}" if query else extra
    if query:
        target += "?" + query
    full_url = f"{parts.scheme}://{parts.netloc}{target}"
    host_header = parts.netloc.rsplit("@", 1)[-1]
    request = (
        f"GET {target} HTTP/1.1\r\nHost: {host_header}\r\nAccept: application/json\r\n"
        "Accept-Encoding: identity\r\nUser-Agent: streamer/0.1\r\nConnection: close\r\n\r\n"
    ).encode("latin-1")
    with trio.fail_after(timeout):
        stream: trio.abc.Stream
        if parts.scheme == "https":
            stream = await trio.open_ssl_over_tcp_stream(
                host, port, ssl_context=ssl_context or default_ssl_context()
            )
        else:
            stream = await trio.open_tcp_stream(host, port)
        async with stream:
            await stream.send_all(request)
            status, reason, _headers, body = await _read_response(stream)
    if not 200 <= status < 300:
        raise HttpError(full_url, status, body, reason)
    try:
        return _decoder.decode(body)
    except Exception as exc:  # DecodeError; RecursionError for a body nested ~1,000 deep
        why = str(exc) if isinstance(exc, msgspec.DecodeError) else f"{type(exc).__name__}: {exc}"
        raise HttpError(full_url, status, body, f"invalid JSON ({why})") from None
