"""Shared fixtures. Each fixture module lives beside the thing it fakes or starts; import
its fixtures here so every test directory can use them."""

from __future__ import annotations

from nats_server import nats_cluster, nats_server  # noqa: F401
from redis_server import redis_client, redis_server  # noqa: F401

from fakebybit.fixtures import fake_bybit  # noqa: F401
