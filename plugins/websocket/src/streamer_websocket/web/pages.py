"""The web view's files: only the known ones, GET or HEAD only, no request body.

Every file is read once, when the sink starts (the page's HTML gets the WebSocket path and
whether a login is needed as ``<meta>`` values, so no inline script is needed). A request
holds a place among the unauthenticated connections while it is answered (the same limits as
a WebSocket still to authenticate, :class:`~streamer_websocket.admission.Admission`); with
none free it is answered 503. Sending the answer is bounded by ``send_timeout``.
"""

from __future__ import annotations

import html
from importlib.resources import files

import trio

from streamer import Metrics
from streamer_websocket.gate import Gate
from streamer_websocket.web.http import RequestHead, plain_response, response

#: URL path -> (file in ``static/``, content type).
KNOWN_FILES: dict[str, tuple[str, str]] = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/book.js": ("book.js", "text/javascript; charset=utf-8"),
    "/app.css": ("app.css", "text/css; charset=utf-8"),
    # Vendored as published on npm (lightweight-charts 4.2.3), with its license.
    "/lightweight-charts.standalone.production.js": (
        "vendor/lightweight-charts.standalone.production.js", "text/javascript; charset=utf-8"),
    "/LICENSE-lightweight-charts.txt": ("vendor/LICENSE-lightweight-charts.txt",
                                        "text/plain; charset=utf-8"),
}


def static_file(name: str) -> bytes:
    return files("streamer_websocket.web").joinpath("static", *name.split("/")).read_bytes()


class Pages:
    def __init__(self, gate: Gate, metrics: Metrics, ws_path: str, auth: bool) -> None:
        self._gate = gate
        self._metrics = metrics
        self._files: dict[str, tuple[bytes, str]] = {}
        for path, (name, content_type) in KNOWN_FILES.items():
            body = static_file(name)
            if name == "index.html":
                body = (body.replace(b"{{ws_path}}", html.escape(ws_path).encode())
                        .replace(b"{{auth}}", b"on" if auth else b"off"))
            self._files[path] = (body, content_type)

    def answer(self, head: RequestHead) -> bytes:
        """The whole response to ``head``."""
        head_only = head.method == "HEAD"
        if head.method not in ("GET", "HEAD"):
            self._metrics.inc("web_bad_requests")
            return plain_response(405, "only GET and HEAD", extra=(("Allow", "GET, HEAD"),))
        if head.has_body:
            self._metrics.inc("web_bad_requests")
            return plain_response(413, "no request body accepted", head_only=head_only)
        known = self._files.get(head.path)
        if known is None:
            self._metrics.inc("web_not_found")
            return plain_response(404, "not found", head_only=head_only)
        self._metrics.inc("web_requests")
        return response(200, known[0], known[1], head_only=head_only)

    async def serve(self, stream: trio.abc.Stream, head: RequestHead, peer: str) -> None:
        """Answer one request on ``stream`` (the front door closes it afterwards)."""
        gate = self._gate
        address = gate.client_address(peer, head.headers)
        if gate.closing or not gate.admission.enter_unauthenticated(address):
            self._metrics.inc("rejected_unauthenticated")
            await _send(stream, plain_response(503, "too many connections"),
                        gate.config.send_timeout)
            return
        try:
            await _send(stream, self.answer(head), gate.config.send_timeout)
        finally:
            gate.admission.leave_unauthenticated(address)


async def _send(stream: trio.abc.Stream, data: bytes, timeout: float) -> None:
    with trio.move_on_after(timeout):
        await stream.send_all(data)
