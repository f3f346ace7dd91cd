"""The test servers' start: a port taken between free_port() and the server's bind."""

from __future__ import annotations

import socket

import pytest
from redis_server import RedisServer
from server_process import start_on_free_ports


def test_a_port_taken_before_the_server_binds_it_is_retried_with_new_ports() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))  # bound, not listening: a probe is refused at once
        made: list[RedisServer] = []

        def make() -> RedisServer:
            server = RedisServer()
            if not made:  # the first one is given the port another process holds
                server.port = holder.getsockname()[1]
            made.append(server)
            return server

        server = start_on_free_ports(make, RedisServer.start, RedisServer.stop)
        try:
            assert len(made) == 2 and server is made[1]
            assert server.client().ping()
        finally:
            server.stop()


def test_a_start_that_fails_for_another_reason_is_not_retried() -> None:
    made: list[RedisServer] = []

    def make() -> RedisServer:
        server = RedisServer(extra_args=["--no-such-option", "1"])  # redis-server exits
        made.append(server)
        return server

    with pytest.raises(pytest.fail.Exception):
        start_on_free_ports(make, RedisServer.start, RedisServer.stop)
    assert len(made) == 1
