"""``streamer tail``'s arguments and ``main``, which imports the client
(:mod:`streamer_websocket.tail`, with trio-websocket) only when the command runs. The plugin
imports this module only when ``tail`` is the chosen command."""

from __future__ import annotations

import argparse

import trio

from streamer_websocket.subscription import DATA_TYPES

DEFAULT_URL = "ws://127.0.0.1:9500/"
DEFAULT_KEY_ENV = "STREAMER_WSS_AUTH_KEY"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=DEFAULT_URL, help=f"sink URL (default {DEFAULT_URL})")
    parser.add_argument("--channel", help="only this channel (the source's name for it: "
                        "linear, spot, ...)")
    parser.add_argument("--type", dest="data_type", choices=DATA_TYPES,
                        help="only this data type")
    parser.add_argument("--symbol", dest="symbols", action="extend", nargs="+",
                        metavar="SYMBOL", help="only these symbols (repeatable)")
    parser.add_argument("--user", help="authenticate as USER; the key is read from "
                        "the environment variable named by --key-env")
    parser.add_argument("--key-env", default=DEFAULT_KEY_ENV,
                        help=f"environment variable holding the key (default {DEFAULT_KEY_ENV})")
    fmt = parser.add_mutually_exclusive_group()
    fmt.add_argument("--json", dest="format", action="store_const", const="json",
                     help="print each envelope as one JSON line")
    fmt.add_argument("--pretty", dest="format", action="store_const", const="pretty",
                     help="print one aligned line per item (default)")
    parser.set_defaults(format="pretty")
    parser.add_argument("--count", type=int, default=None,
                        help="exit after printing this many data messages")
    parser.add_argument("--connect-timeout", type=float, default=10.0,
                        help="seconds to wait for the connection (default 10)")
    parser.add_argument("--ca-file", help="for wss://: trust the certificates in this PEM "
                        "file (a self-signed server's certificate) instead of the system's")


def main(args: argparse.Namespace) -> int:
    from streamer_websocket.tail import tail

    try:
        return trio.run(tail, args)
    except KeyboardInterrupt:
        return 0
