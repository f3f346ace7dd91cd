"""Real ``nats-server`` processes for the tests: one JetStream server, or a 3-node cluster.

Every server listens on free loopback ports (client, cluster route, HTTP monitoring) and
stores JetStream data in its own temporary directory; the machine's own server on 4222 is
never touched. Ready means the monitoring endpoint ``/healthz`` answers ``ok`` (JetStream
enabled and, in a cluster, the meta leader elected).

The binary is ``$STREAMER_TEST_NATS_SERVER`` or ``nats-server`` on PATH (Debian installs it
in /usr/sbin). If it is missing the fixture FAILS rather than skips; see :mod:`server_process`.

:func:`read_stream` reads a whole stream back with nats-py (asyncio, in a worker thread).
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from server_process import ServerProcess, free_port, running_on_free_ports, server_binary

_START_TIMEOUT = 20.0


def nats_server_binary() -> str:
    return server_binary("nats-server", "STREAMER_TEST_NATS_SERVER", suite="NATS",
                         also=["/usr/sbin/nats-server"])


class NatsServer(ServerProcess):
    """One ``nats-server -js`` on 127.0.0.1; optionally a node of a cluster."""

    def __init__(self, name: str = "n1", *, cluster_port: int | None = None,
                 routes: Sequence[int] = (), workdir: str | None = None) -> None:
        super().__init__(f"nats-server {name}",
                         workdir or tempfile.mkdtemp(prefix=f"streamer-nats-{name}-"), "nats.log")
        self.binary = nats_server_binary()
        self.name = name
        self.port = free_port()
        self.http_port = free_port()
        self.cluster_port = cluster_port
        self.routes = list(routes)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def _args(self) -> list[str]:
        args = [self.binary, "-a", "127.0.0.1", "-p", str(self.port), "-m", str(self.http_port),
                "-n", self.name, "-js", "-sd", os.path.join(self.workdir, "js")]
        if self.cluster_port is not None:
            args += ["--cluster_name", "streamer-test",
                     "--cluster", f"nats://127.0.0.1:{self.cluster_port}",
                     "--routes", ",".join(f"nats://127.0.0.1:{p}" for p in self.routes)]
        return args

    def start(self, wait: bool = True) -> NatsServer:
        self.launch()
        if wait:
            self.wait_ready()
        return self

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/healthz",
                                        timeout=0.5) as resp:
                return bool(json.load(resp).get("status") == "ok")
        except (OSError, ValueError):
            return False

    def wait_ready(self, timeout: float = _START_TIMEOUT) -> None:
        self.wait_until(self.healthy, timeout, interval=0.05, waiting_for="not healthy")

    def restart(self) -> None:
        """Stop (SIGTERM, data kept) and start again on the same ports and store."""
        self.stop(remove=False)
        self.start()


class NatsCluster:
    """Three clustered JetStream servers on loopback."""

    def __init__(self, size: int = 3) -> None:
        ports = [free_port() for _ in range(size)]
        self.nodes = [
            NatsServer(f"n{i + 1}", cluster_port=ports[i],
                       routes=[p for j, p in enumerate(ports) if j != i])
            for i in range(size)
        ]

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    def node(self, name: str) -> NatsServer:
        return next(n for n in self.nodes if n.name == name)

    def start(self) -> NatsCluster:
        for node in self.nodes:
            node.start(wait=False)
        for node in self.nodes:
            node.wait_ready()
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@pytest.fixture
def nats_server() -> Iterator[NatsServer]:
    """A fresh single JetStream server per test (``.url .kill() .restart()``)."""
    yield from running_on_free_ports(NatsServer, NatsServer.start, NatsServer.stop)


@pytest.fixture
def nats_cluster() -> Iterator[NatsCluster]:
    """A fresh 3-node JetStream cluster per test (``.urls .node(name) .nodes``)."""
    yield from running_on_free_ports(NatsCluster, NatsCluster.start, NatsCluster.stop)


# -- reading back (asyncio, run in a worker thread by trio tests) ---------------------------

async def _read_stream(urls: list[str], stream: str, timeout: float) -> list[Any]:
    import nats

    nc = await nats.connect(servers=urls, connect_timeout=2, max_reconnect_attempts=5)
    try:
        js = nc.jetstream(timeout=timeout)
        info = await js.stream_info(stream)
        last = info.state.last_seq
        out: list[Any] = []
        if info.state.messages == 0:
            return out
        sub = await js.subscribe(">", stream=stream, ordered_consumer=True)
        try:
            while True:
                msg = await sub.next_msg(timeout=timeout)
                out.append(msg)
                if msg.metadata.sequence.stream >= last:
                    break
        finally:
            await sub.unsubscribe()
        return out
    finally:
        await nc.close()


def read_stream(urls: str | list[str], stream: str = "BYBIT", timeout: float = 5.0,
                patience: float = 60.0) -> list[Any]:
    """Every message of ``stream`` (nats-py ``Msg``: .subject .data .headers .metadata).

    Retried for up to ``patience`` seconds: just after a cluster node died the stream may
    still be moving its consumers to the new leader, and creating the read-back consumer
    times out (on a loaded 2-core machine four 5 s attempts were once not enough)."""
    servers = [urls] if isinstance(urls, str) else list(urls)
    give_up_at = time.monotonic() + patience
    while True:
        try:
            return asyncio.run(_read_stream(servers, stream, timeout))
        except Exception:
            if time.monotonic() >= give_up_at:
                raise
            time.sleep(1.0)


async def _stream_info(urls: list[str], stream: str) -> Any:
    import nats

    nc = await nats.connect(servers=urls, connect_timeout=2, max_reconnect_attempts=5)
    try:
        return await nc.jetstream(timeout=5).stream_info(stream)
    finally:
        await nc.close()


def stream_info(urls: str | list[str], stream: str = "BYBIT") -> Any:
    return asyncio.run(_stream_info([urls] if isinstance(urls, str) else list(urls), stream))
