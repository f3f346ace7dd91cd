"""``streamer tail``: connect to a websocket sink and print what arrives.

A tool for humans checking a running service: data goes to stdout (one pretty line per item,
or one JSON envelope per line with ``--json``), status and errors to stderr.
"""

from __future__ import annotations

import argparse
import os
import ssl
import sys
from typing import Any, TextIO
from urllib.parse import urlsplit

import msgspec
import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    ConnectionTimeout,
    HandshakeError,
    WebSocketConnection,
    open_websocket_url,
)

from streamer.pretty import envelope_lines
from streamer_websocket.auth import is_loopback
from streamer_websocket.tail_cli import configure as configure  # the command, re-exported
from streamer_websocket.tail_cli import main as main


def pretty_lines(envelope: dict[str, Any]) -> list[str]:
    """One short line per item of a wire envelope (:mod:`streamer.pretty`)."""
    return envelope_lines(envelope)


def subscription_request(args: argparse.Namespace) -> dict[str, Any] | None:
    if not (args.channel or args.data_type or args.symbols):
        return None
    arg: dict[str, Any] = {}
    if args.channel:
        arg["channel"] = args.channel
    if args.data_type:
        arg["data_type"] = args.data_type
    if args.symbols:
        arg["symbols"] = args.symbols
    return {"op": "subscribe", "args": [arg]}


def wanted(args: argparse.Namespace, envelope: dict[str, Any]) -> dict[str, Any] | None:
    """``envelope`` cut down to what the filters select, or None if nothing is left.

    tail applies its filters itself to everything it prints, so the snapshot a server sends
    on connect (before it has read the subscription) is filtered like live data.
    """
    if args.channel and envelope.get("channel") != args.channel:
        return None
    if args.data_type and envelope.get("data_type") != args.data_type:
        return None
    if not args.symbols:
        return envelope
    symbols = {s.upper() for s in args.symbols}
    field = "s" if envelope.get("data_type") == "trades" else "symbol"
    data = envelope.get("data")
    if not isinstance(data, list):
        return None
    kept = [item for item in data if isinstance(item, dict) and item.get(field) in symbols]
    if not kept:
        return None
    if len(kept) == len(data):
        return envelope
    return {**envelope, "data": kept}


class LatestPrinted:
    """The latest state item (ticker, price, kline) printed per series, to drop repeats.

    The server sends its latest state on connect and again for a subscription, and its
    reply to the subscription may come before or after the first: the same item twice.
    An item equal to the one printed last for its series (channel, data type, symbol,
    interval) says nothing new and is dropped. Trades are never dropped. At most one item
    per series is kept (the server's snapshot holds as many)."""

    def __init__(self) -> None:
        self._latest: dict[tuple[Any, ...], Any] = {}

    def new_items(self, envelope: dict[str, Any]) -> dict[str, Any] | None:
        """``envelope`` without repeats (None if nothing is left); what is left is noted
        as printed."""
        data = envelope.get("data")
        if envelope.get("data_type") == "trades" or not isinstance(data, list):
            return envelope
        latest = self._latest
        kept = []
        for item in data:
            if not isinstance(item, dict):
                kept.append(item)
                continue
            series = (envelope.get("channel"), envelope.get("data_type"), item.get("symbol"),
                      item.get("interval"))
            if latest.get(series) != item:
                latest[series] = item
                kept.append(item)
        if not kept:
            return None
        return envelope if len(kept) == len(data) else {**envelope, "data": kept}


def client_ssl_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    if urlsplit(args.url).scheme != "wss":
        return None
    try:
        return ssl.create_default_context(cafile=args.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise _Failed(f"cannot use --ca-file {args.ca_file}: {exc}") from None


async def _check_tls(args: argparse.Namespace, context: ssl.SSLContext) -> None:
    """Complete one TLS handshake first: trio-websocket reports a certificate problem only
    as a connect timeout, so tail checks the handshake itself and names the cause."""
    parts = urlsplit(args.url)
    host = parts.hostname or ""
    try:
        port = parts.port or 443
    except ValueError as exc:
        raise _Failed(f"cannot connect to {args.url}: {exc}") from None
    try:
        with trio.fail_after(args.connect_timeout):
            stream = await trio.open_ssl_over_tcp_stream(host, port, ssl_context=context,
                                                         https_compatible=True)
            try:
                await stream.do_handshake()
            finally:
                await trio.aclose_forcefully(stream)
    except trio.TooSlowError:
        raise _Failed(f"cannot connect to {args.url}: timed out") from None
    except (OSError, trio.BrokenResourceError) as exc:
        cause = exc.__cause__ or exc
        raise _Failed(f"cannot connect to {args.url}: TLS: {cause}") from None


def warn_cleartext_key(args: argparse.Namespace, err: TextIO) -> None:
    """Warn when --user would send the key unencrypted to a host that is not this machine."""
    parts = urlsplit(args.url)
    if args.user and parts.scheme == "ws" and not is_loopback(parts.hostname or ""):
        print(f"streamer tail: warning: sending the key in clear text over ws:// to "
              f"{parts.hostname}; use wss:// (the sink's tls_certfile/tls_keyfile)", file=err)


class _Failed(Exception):
    """Stop tail with exit status 1 and this message."""


async def tail(
    args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        return await _tail(args, out, err)
    except _Failed as exc:
        print(f"streamer tail: {exc}", file=err)
        return 1


async def _tail(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    key = None
    if args.user:
        key = os.environ.get(args.key_env, "")
        if not key:
            raise _Failed(f"--user given but the environment variable {args.key_env} is empty")
    if args.ca_file and urlsplit(args.url).scheme != "wss":
        raise _Failed("--ca-file needs a wss:// URL")
    ssl_context = client_ssl_context(args)
    warn_cleartext_key(args, err)
    if ssl_context is not None:
        await _check_tls(args, ssl_context)
    try:
        async with open_websocket_url(
            args.url, ssl_context=ssl_context, connect_timeout=args.connect_timeout,
            disconnect_timeout=2.0,
        ) as ws:
            return await _receive(ws, args, key, out, err)
    except ConnectionRejected as exc:
        if exc.status_code == 401:
            raise _Failed(f"{args.url} rejected the connection: authentication "
                          "required or wrong credentials (HTTP 401)") from None
        if exc.status_code == 429:
            raise _Failed(f"{args.url} rejected the connection: too many failed "
                          "authentications from this address, try later (HTTP 429)") from None
        raise _Failed(f"{args.url} rejected the connection (HTTP {exc.status_code})") from None
    except ConnectionTimeout:
        raise _Failed(f"cannot connect to {args.url}: timed out") from None
    except (OSError, HandshakeError, ValueError, trio.BrokenResourceError) as exc:
        cause = exc.__cause__ or exc
        raise _Failed(f"cannot connect to {args.url}: {cause}") from None


async def _receive(
    ws: WebSocketConnection, args: argparse.Namespace, key: str | None, out: TextIO, err: TextIO
) -> int:
    encode = msgspec.json.encode
    if args.user:
        await ws.send_message(encode({"user": args.user, "key": key}).decode())
    request = subscription_request(args)
    if request is not None:
        await ws.send_message(encode(request).decode())
    printed = 0
    latest = LatestPrinted()
    while args.count is None or printed < args.count:
        try:
            raw = await ws.get_message()
        except ConnectionClosed as exc:
            reason = exc.reason
            detail = f"{reason.code} {reason.name}" if reason else "unknown"
            if reason and reason.reason:
                detail += f": {reason.reason}"
            raise _Failed(f"the server closed the connection ({detail})") from None
        try:
            message = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            print(f"streamer tail: not JSON: {raw[:200]!r}", file=err)
            continue
        if not isinstance(message, dict):
            continue
        if "data" in message and "data_type" in message:
            selected = wanted(args, message)
            if selected is not None:
                selected = latest.new_items(selected)
            if selected is None:
                continue
            if args.format == "json":
                text = raw if isinstance(raw, str) else raw.decode()
                if selected is not message:
                    text = encode(selected).decode()
                out.write(text)
                out.write("\n")
            else:
                message = selected
                out.write("".join(line + "\n" for line in pretty_lines(message)))
            out.flush()
            printed += 1
        elif "error" in message:
            if str(message["error"]).startswith("Authentication"):
                raise _Failed(f"authentication failed: {message['error']}"
                              + ("" if args.user else " (use --user and set the key in "
                                 f"{args.key_env})"))
            print(f"streamer tail: server error: {message['error']}", file=err)
        elif message.get("status") == "authenticated":
            print("streamer tail: authenticated", file=err)
        elif "op" in message and "success" in message:
            print(f"streamer tail: {message['op']} ok: {message.get('args')}", file=err)
    return 0
