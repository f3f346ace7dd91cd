"""wss://: the sink serves TLS with tls_certfile/tls_keyfile; ``streamer tail`` speaks it with
--ca-file. The certificate is made by the test (self-signed, openssl CLI)."""

from __future__ import annotations

import argparse
import io

import pytest
import trio
from tls_certs import make_self_signed
from trio_websocket import ConnectionTimeout, HandshakeError, open_websocket_url

from streamer import FatalError, Inbox
from streamer_websocket import tail
from streamer_websocket.config import WebSocketConfig
from websocket.helpers import StartSink, kline, make_sink, trade

KEY_ENV = "STREAMER_TEST_WSS_KEY"


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    return make_self_signed(str(tmp_path_factory.mktemp("wss")))


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="streamer tail")
    tail.configure(parser)
    return parser.parse_args(list(argv))


async def run_tail(args: argparse.Namespace) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = await tail.tail(args, out, err)
    return status, out.getvalue(), err.getvalue()


async def test_wss_serves_tail_with_ca_file_and_authenticates(
    start_sink: StartSink, cert: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "k3y")
    certfile, keyfile = cert
    with trio.fail_after(10):
        sink, inbox = await start_sink(tls_certfile=certfile, tls_keyfile=keyfile,
                                       auth_user="bob", auth_key_env=KEY_ENV)
        assert sink.url.startswith("wss://127.0.0.1:")
        await inbox.put([kline("BTCUSDT", 42.0)])
        status, out, err = await run_tail(parse(
            "--url", sink.url, "--ca-file", certfile, "--user", "bob", "--key-env", KEY_ENV,
            "--count", "1"))
        assert status == 0, err
        assert "authenticated" in err and "klines" in out and " C 42 " in out
        assert "warning" not in err


async def test_wss_refuses_untrusted_and_plain_clients(
    start_sink: StartSink, cert: tuple[str, str]
) -> None:
    certfile, keyfile = cert
    with trio.fail_after(10):
        sink, inbox = await start_sink(tls_certfile=certfile, tls_keyfile=keyfile)
        await inbox.put([kline()])
        # Without --ca-file the self-signed certificate is not trusted.
        status, out, err = await run_tail(parse("--url", sink.url, "--count", "1"))
        assert status == 1 and out == ""
        assert "certificate verify failed" in err, err
        # Plain ws:// to the TLS port gets no WebSocket (the server drops it at its TLS
        # layer; trio-websocket's client then waits, so the test bounds the attempt).
        plain = sink.url.replace("wss://", "ws://")
        served = False
        with trio.move_on_after(2):
            try:
                async with open_websocket_url(plain, connect_timeout=1):
                    served = True
            except (ConnectionTimeout, HandshakeError, OSError):
                pass
        assert not served
        # The server keeps serving trusted clients after both.
        status, out, err = await run_tail(parse("--url", sink.url, "--ca-file", certfile,
                                                "--count", "1"))
        assert status == 0 and "klines" in out, err


async def test_unusable_tls_files_refuse_to_start(tmp_path) -> None:
    missing = str(tmp_path / "missing.pem")
    sink = make_sink(tls_certfile=missing, tls_keyfile=missing)
    with trio.fail_after(10), pytest.raises(FatalError, match="cannot load tls_certfile"):
        await sink.run(Inbox("ws", maxsize=10, overflow="block"))


def test_tls_options_are_validated() -> None:
    with pytest.raises(ValueError, match="set together"):
        WebSocketConfig(tls_certfile="cert.pem")
    with pytest.raises(ValueError, match="set together"):
        WebSocketConfig(tls_keyfile="key.pem")


def test_tail_warns_before_sending_a_key_in_clear_text() -> None:
    def warning(*argv: str) -> str:
        err = io.StringIO()
        tail.warn_cleartext_key(parse(*argv), err)
        return err.getvalue()

    # Checked without connecting: tests only ever talk to loopback.
    assert "clear text over ws:// to 192.0.2.7" in warning(
        "--url", "ws://192.0.2.7:9500/", "--user", "bob")
    assert "clear text" in warning("--url", "ws://stream.example:9500/", "--user", "bob")
    assert warning("--url", "wss://192.0.2.7:9500/", "--user", "bob") == ""
    assert warning("--url", "ws://127.0.0.1:9500/", "--user", "bob") == ""
    assert warning("--url", "ws://localhost:9500/", "--user", "bob") == ""
    assert warning("--url", "ws://[::1]:9500/", "--user", "bob") == ""
    assert warning("--url", "ws://192.0.2.7:9500/") == ""  # no key sent


async def test_ca_file_needs_wss() -> None:
    status, _, err = await run_tail(parse("--url", "ws://127.0.0.1:1/", "--ca-file", "x.pem"))
    assert status == 1 and "--ca-file needs a wss:// URL" in err


async def test_a_batched_client_over_tls(start_sink: StartSink, cert: tuple[str, str]) -> None:
    """Over TLS the tick cannot write to the socket itself: the client's task writes."""
    import ssl

    import msgspec

    certfile, keyfile = cert
    context = ssl.create_default_context(cafile=certfile)
    with trio.fail_after(20):
        sink, inbox = await start_sink(tls_certfile=certfile, tls_keyfile=keyfile)
        async with open_websocket_url(sink.url, ssl_context=context) as ws:
            await ws.send_message('{"op": "batch"}')
            assert msgspec.json.decode(await ws.get_message())["op"] == "batch"
            for b in range(20):
                await inbox.put([trade("BTCUSDT", 10 * b + j) for j in range(10)])
                await trio.sleep(0.01)
            got: list[str] = []
            while len(got) < 200:
                got += [t["i"] for t in msgspec.json.decode(await ws.get_message())["data"]]
            assert got == [f"t{n}" for n in range(200)]
        assert sink.metrics["batched_writes"] >= 2
