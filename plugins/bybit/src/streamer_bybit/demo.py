"""``streamer demo``: the example pipeline against a simulated Bybit, offline, in one command.

The Bybit simulator (:mod:`streamer_bybit.simulator`) serves a seeded random market on a free
port of 127.0.0.1 in this process; ``streamer run`` runs streamer.toml.example's source and
transform, pointed at it (``url`` / ``rest_url``), with the console as the only sink, in a
child process: the same command a real deployment runs. Nothing leaves the loopback
interface, so it works without a network, a firewall hole or Redis.

With ``--web`` the pipeline also gets a ``websocket`` sink with ``web = true`` on a free port of
127.0.0.1, and a second source streaming the symbols' order books to it only (the simulator
pushes them at Bybit's pace; the console never sees them): the page's URL and its login are
printed once the pipeline streams (the key is
``$STREAMER_WSS_AUTH_KEY`` if set, else generated here and printed once; it reaches the child
through its environment, never the pipeline file). The demo only writes the sink's table; it
imports nothing of the websocket plugin.

The child runs in its own session so that Ctrl-C reaches it once, forwarded by the demo (a
terminal's SIGINT would otherwise hit both, and a second signal means "stop now" to
``streamer run``); it is sent SIGTERM if the demo dies (Linux).
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from typing import TYPE_CHECKING

import trio

from streamer.intervals import interval

if TYPE_CHECKING:
    from streamer_bybit.simulator import FakeBybit

DEFAULT_SYMBOLS = ("BTCUSDT", "ETHUSDT")
DEFAULT_INTERVALS = ("5s", "1m")
MAX_SYMBOLS = 20
MAX_RATE = 1000.0
#: ``streamer run``'s status for an invalid pipeline (here: a plugin the demo needs missing).
EXIT_CONFIG = 2
#: How long the pipeline may take to start and subscribe before the demo gives up on it.
SUBSCRIBE_TIMEOUT = 60.0
#: The simulator keeps this many recent trades per symbol for REST (Bybit: 1000 on linear).
HISTORY_LIMIT = 1000
_SYMBOL = re.compile(r"[A-Z0-9]{2,30}")
_PR_SET_PDEATHSIG = 1
#: The demo's status when the pipeline never subscribed (it is stopped).
EXIT_NOT_STREAMING = 1
#: ``--web``: the web view's user, and the variable its key is read from (the websocket
#: sink's default ``auth_key_env``).
WEB_USER = "demo"
WEB_KEY_ENV = "STREAMER_WSS_AUTH_KEY"
#: ``--web``: the depth of the order books the web view shows (Bybit pushes depth 200 every
#: 100 ms).
WEB_BOOK_DEPTH = 200


def _symbols(text: str) -> list[str]:
    symbols = [s.strip().upper() for s in text.replace(",", " ").split() if s.strip()]
    bad = [s for s in symbols if not _SYMBOL.fullmatch(s)]
    if bad:
        raise argparse.ArgumentTypeError(f"not a symbol: {', '.join(bad)} (e.g. BTCUSDT)")
    return symbols


def _interval(text: str) -> str:
    try:
        return interval(text).label
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def _rate(text: str) -> float:
    value = float(text)
    if not 0 < value <= MAX_RATE:
        raise argparse.ArgumentTypeError(f"must be in (0, {MAX_RATE:g}]")
    return value


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=_seconds, default=None,
                        help="stop this many seconds after the pipeline subscribed "
                        "(default: until Ctrl-C)")
    parser.add_argument("--symbols", type=_symbols, action="extend", metavar="SYMBOLS",
                        help=f"symbols to simulate, comma or space separated (default "
                        f"{','.join(DEFAULT_SYMBOLS)}; at most {MAX_SYMBOLS})")
    parser.add_argument("--intervals", type=_interval, nargs="+", metavar="INTERVAL",
                        default=list(DEFAULT_INTERVALS),
                        help=f"kline intervals (default {' '.join(DEFAULT_INTERVALS)})")
    parser.add_argument("--rate", type=_rate, default=4.0,
                        help="trade messages per second over all symbols (default 4)")
    parser.add_argument("--seed", type=int, default=1, help="the market's random seed")
    parser.add_argument("--format", choices=["pretty", "json"], default="pretty",
                        help="console format: aligned lines (default) or wire JSON lines")
    parser.add_argument("--web", action="store_true",
                        help="also serve the web view on a free port of 127.0.0.1 (user "
                        f"{WEB_USER}; key ${WEB_KEY_ENV}, else a generated one, printed once)")


def pipeline_toml(symbols: Sequence[str], intervals: Sequence[str], port: int,
                  console_format: str, web_port: int | None = None) -> str:
    """streamer.toml.example's source and transform against the simulator, console sink;
    with ``web_port`` also the web view's websocket sink."""
    quoted = ", ".join(f'"{s}"' for s in symbols)
    labels = ", ".join(f'"{i}"' for i in intervals)
    return f"""\
# streamer demo: streamer.toml.example's pipeline, the source pointed at the Bybit simulator
# on 127.0.0.1:{port}, trades, tickers, prices and klines printed by the console.
[streamer]
log_level = "INFO"

[[sources]]
name = "linear"
type = "bybit.linear"
symbols = [{quoted}]
streams = ["trades", "tickers", "price"]
url = "ws://127.0.0.1:{port}/v5/public/linear"
rest_url = "http://127.0.0.1:{port}"

[[transforms]]
name = "klines"
type = "klines.from_trades"
inputs = ["linear"]
intervals = [{labels}]
waiter_latency_ms = 100

[[sinks]]
type = "console"
inputs = ["linear", "klines"]
format = "{console_format}"
""" + ("" if web_port is None else f"""
# streamer demo --web: the symbols' order books, for the web view only
[[sources]]
name = "books"
type = "bybit.linear"
symbols = [{quoted}]
streams = ["orderbook"]
book_depth = {WEB_BOOK_DEPTH}
url = "ws://127.0.0.1:{port}/v5/public/linear"
rest_url = "http://127.0.0.1:{port}"

# streamer demo --web: the web view, key from ${WEB_KEY_ENV}
[[sinks]]
name = "web"
type = "websocket"
inputs = ["linear", "klines", "books"]
host = "127.0.0.1"
port = {web_port}
web = true
auth_user = "{WEB_USER}"
""")


def free_loopback_port() -> int:
    """A TCP port of 127.0.0.1 free now (the sink binds it moments later)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def web_login(environ: dict[str, str]) -> tuple[str, str]:
    """The web view's key (from ``environ``, else generated) and how to tell the user of
    it: a generated key is shown (once), a key of theirs is named, never shown."""
    key = environ.get(WEB_KEY_ENV)
    if key:
        return key, f"the key in ${WEB_KEY_ENV}"
    key = secrets.token_urlsafe(18)
    return key, f"key {key}"


def _die_with_parent() -> None:  # pragma: no cover  (runs in the child before exec)
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


async def demo(args: argparse.Namespace) -> int:
    symbols = list(dict.fromkeys(args.symbols or DEFAULT_SYMBOLS))
    if len(symbols) > MAX_SYMBOLS:
        print(f"streamer demo: at most {MAX_SYMBOLS} symbols, got {len(symbols)}",
              file=sys.stderr)
        return EXIT_CONFIG
    # here: `streamer check` needs none of it
    from streamer_bybit.simulator import FakeBybit
    from streamer_bybit.simulator.books import run_books

    fake = FakeBybit(linear_symbols=symbols, spot_symbols=(), seed=args.seed,
                     history_limit=HISTORY_LIMIT, non_trading_instruments=False)
    environ = dict(os.environ)
    web_port, announce = None, None
    if args.web:
        web_port = free_loopback_port()
        key, told = web_login(environ)
        environ[WEB_KEY_ENV] = key
        announce = (f"streamer demo: web view at http://127.0.0.1:{web_port}/ "
                    f"(user {WEB_USER}, {told})")
    async with trio.open_nursery() as nursery:
        port = await nursery.start(fake.serve)
        nursery.start_soon(functools.partial(
            fake.run_market, "linear", symbols, rate=args.rate, wait_for_subscribers=True))
        if args.web:  # the books source's topics, at their depth's push interval
            await nursery.start(run_books, fake)
        with tempfile.TemporaryDirectory(prefix="streamer-demo-") as workdir:
            config = os.path.join(workdir, "demo.toml")
            with open(config, "w") as f:
                f.write(pipeline_toml(symbols, args.intervals, port, args.format, web_port))
            print(f"streamer demo: simulated Bybit on 127.0.0.1:{port} ({', '.join(symbols)}); "
                  f"running: streamer run -c {config}", file=sys.stderr, flush=True)
            status = await _run_pipeline(config, fake, symbols, args.seconds, environ,
                                         announce)
        nursery.cancel_scope.cancel()
    if status == EXIT_CONFIG:
        print("streamer demo: the pipeline needs the bybit.linear source, the "
              "klines.from_trades transform (streamer-aggregate) and the console sink "
              "(streamer-console)" + (", and --web the websocket sink (streamer-websocket)"
                                      if args.web else ""), file=sys.stderr)
    return status


async def _run_pipeline(config: str, fake: FakeBybit, symbols: list[str],
                        seconds: float | None, environ: dict[str, str],
                        announce: str | None) -> int:
    """Run ``streamer run -c config`` (in ``environ``) until it exits; print ``announce``
    once it streams; stop it on a signal or after ``seconds`` of streaming; return its exit
    status."""
    never_subscribed = False
    # Started from this (the main) thread, not trio's open_process: that forks in a worker
    # thread, and the kernel's parent-death signal fires when the forking *thread* exits,
    # which trio's idle workers do after seconds. One fork, before any client is served.
    process = subprocess.Popen([sys.executable, "-m", "streamer", "run", "-c", config],
                               start_new_session=True, preexec_fn=_die_with_parent,
                               env=environ)
    try:
        async with trio.open_nursery() as nursery:

            async def stop_on_signals() -> None:
                with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for signum in signals:
                        # once: clean stop; again: streamer run stops at once
                        process.send_signal(signum)

            async def stop_after_streaming() -> None:
                nonlocal never_subscribed
                with trio.move_on_after(SUBSCRIBE_TIMEOUT) as waiting:
                    await fake.wait_subscribed("linear", [f"publicTrade.{s}" for s in symbols])
                if waiting.cancelled_caught:
                    never_subscribed = True
                    print(f"streamer demo: the pipeline did not subscribe within "
                          f"{SUBSCRIBE_TIMEOUT:g}s; stopping it", file=sys.stderr)
                    process.send_signal(signal.SIGTERM)
                    return
                if announce is not None:  # the sinks start before the sources subscribe
                    print(announce, file=sys.stderr, flush=True)
                if seconds is None:
                    return
                await trio.sleep(seconds)
                process.send_signal(signal.SIGTERM)

            nursery.start_soon(stop_on_signals)
            nursery.start_soon(stop_after_streaming)
            status = await trio.to_thread.run_sync(process.wait, abandon_on_cancel=True)
            nursery.cancel_scope.cancel()
    finally:
        if process.returncode is None:  # cancelled from outside: do not leave it running
            process.kill()
            process.wait()
    return EXIT_NOT_STREAMING if never_subscribed and status == 0 else status


def main(args: argparse.Namespace) -> int:
    try:
        return trio.run(demo, args)
    except KeyboardInterrupt:  # Ctrl-C before the pipeline started: nothing to stop
        return 0
