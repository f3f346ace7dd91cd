"""A real ``redis-server`` for the tests: started on a free loopback port, no persistence.

``redis_server`` (session scope) starts one server for the whole session; ``redis_client``
(function scope) hands out a client on it after ``FLUSHALL``, so every test starts empty.
Tests that need their own server (``--requirepass``, TLS, a unix socket) use
:class:`RedisServer` directly as a context manager.

The binary is taken from ``$STREAMER_TEST_REDIS_SERVER`` or ``redis-server`` on PATH. If it is
missing the fixture FAILS (it does not skip); see :mod:`server_process`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import redis
from server_process import ServerProcess, free_port, running_on_free_ports, server_binary
from tls_certs import make_self_signed

_START_TIMEOUT = 10.0


def redis_server_binary() -> str:
    """Path of the ``redis-server`` binary, or a clear failure."""
    return server_binary("redis-server", "STREAMER_TEST_REDIS_SERVER", suite="Redis")


class RedisServer(ServerProcess):
    """One ``redis-server`` process on 127.0.0.1 (or a unix socket / TLS port)."""

    log_tail_chars = 2000

    def __init__(
        self,
        *,
        port: int | None = None,
        extra_args: Sequence[str] = (),
        password: str | None = None,
        tls: bool = False,
        unix_socket: bool = False,
    ) -> None:
        super().__init__("redis-server", tempfile.mkdtemp(prefix="streamer-redis-"),
                         "redis.log")
        self.binary = redis_server_binary()
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.password = password
        self.unix_socket = os.path.join(self.workdir, "redis.sock") if unix_socket else None
        self.tls_cert: str | None = None
        self.tls_key: str | None = None
        if tls:
            self.tls_cert, self.tls_key = make_self_signed(self.workdir)
        self.extra_args = list(extra_args)

    @property
    def url(self) -> str:
        scheme = "rediss" if self.tls_cert else "redis"
        return f"{scheme}://{self.host}:{self.port}/0"

    def _args(self) -> list[str]:
        args = [
            self.binary,
            "--bind", self.host,
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", self.workdir,
            "--loglevel", "warning",
        ]
        if self.tls_cert:
            args += [
                "--port", "0",
                "--tls-port", str(self.port),
                "--tls-cert-file", self.tls_cert,
                "--tls-key-file", str(self.tls_key),
                "--tls-ca-cert-file", self.tls_cert,
                "--tls-auth-clients", "no",
            ]
        else:
            args += ["--port", str(self.port)]
        if self.unix_socket:
            args += ["--unixsocket", self.unix_socket, "--unixsocketperm", "700"]
        if self.password is not None:
            args += ["--requirepass", self.password]
        return args + self.extra_args

    def client(self, **kwargs: Any) -> redis.Redis:
        """A new client for reading back (bytes responses)."""
        options: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "password": self.password,
            "socket_timeout": 5,
            "socket_connect_timeout": 5,
        }
        if self.tls_cert:
            options.update(ssl=True, ssl_ca_certs=self.tls_cert)
        options.update(kwargs)
        return redis.Redis(**options)

    def start(self) -> RedisServer:
        self.launch()
        probe = self.client(socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            self.wait_until(lambda: _answers_ping(probe), _START_TIMEOUT, interval=0.02,
                            waiting_for="did not answer PING")
        finally:
            probe.close()
        return self

    def restart(self) -> None:
        """Start again on the same port (empty: there is no persistence)."""
        self.kill()
        self.start()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _answers_ping(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError):  # not up yet, or not redis at all
        return False


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the session (``.host .port .url .client() .kill() .restart()``)."""
    yield from running_on_free_ports(RedisServer, RedisServer.start, RedisServer.stop)


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client on the session server, after FLUSHALL (restarts the server if a test killed it)."""
    if redis_server.process is None or redis_server.process.poll() is not None:
        redis_server.start()
    client = redis_server.client()
    client.flushall()
    try:
        yield client
    finally:
        client.close()
