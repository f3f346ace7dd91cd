"""Just enough HTTP/1.1 for the web view: a parsed request head, and whole responses with the
security headers every answer carries. One request per connection (``Connection: close``)."""

from __future__ import annotations

import attrs

#: Sent with every answer: no script, style or frame from anywhere but the page's own files,
#: no inline script or style, never inside a frame, no MIME sniffing, no referrer.
SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("Content-Security-Policy",
     "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
     "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
)

REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           413: "Content Too Large", 431: "Request Header Fields Too Large",
           503: "Service Unavailable"}


class HeadTooLarge(ValueError):
    """A request head longer than the front door's limit."""


@attrs.frozen
class RequestHead:
    method: str
    #: The path without its query string.
    path: str
    #: Header names lower-cased, as (name, value) bytes like trio-websocket gives them.
    headers: list[tuple[bytes, bytes]]

    def header(self, name: bytes) -> bytes | None:
        return next((v for k, v in self.headers if k == name), None)

    @property
    def is_websocket_upgrade(self) -> bool:
        upgrade = self.header(b"upgrade")
        return upgrade is not None and upgrade.strip().lower() == b"websocket"

    @property
    def has_body(self) -> bool:
        length = self.header(b"content-length")
        return (self.header(b"transfer-encoding") is not None
                or (length is not None and length.strip() not in (b"", b"0")))


def parse_head(raw: bytes) -> RequestHead | None:
    """The head at the start of ``raw`` (up to its blank line), or None if it is no HTTP/1.x
    request head."""
    try:
        text = raw[: raw.index(b"\r\n\r\n")].decode("latin-1")
    except ValueError:
        return None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not parts[1].startswith("/"):
        return None
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            return None
        headers.append((name.lower().encode("latin-1"), value.strip().encode("latin-1")))
    return RequestHead(parts[0], parts[1].split("?", 1)[0], headers)


def response(status: int, body: bytes, content_type: str, *, head_only: bool = False,
             extra: tuple[tuple[str, str], ...] = ()) -> bytes:
    """A whole response (head and, unless ``head_only``, body) closing the connection."""
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}",
             f"Content-Type: {content_type}", f"Content-Length: {len(body)}",
             "Connection: close", "Cache-Control: no-store",
             *(f"{k}: {v}" for k, v in (*SECURITY_HEADERS, *extra))]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + body


def plain_response(status: int, text: str, *, head_only: bool = False,
                   extra: tuple[tuple[str, str], ...] = ()) -> bytes:
    return response(status, (text + "\n").encode(), "text/plain; charset=utf-8",
                    head_only=head_only, extra=extra)
