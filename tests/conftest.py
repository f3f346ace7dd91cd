"""Shared fixtures. Each fixture module lives beside the thing it fakes or starts; import
its fixtures here so every test directory can use them."""

from __future__ import annotations

import os

from bybit_simulator import fake_bybit  # noqa: F401
from hypothesis import settings
from nats_server import nats_cluster, nats_server  # noqa: F401
from postgres_server import postgres_schema, postgres_server  # noqa: F401
from redis_server import redis_client, redis_server  # noqa: F401

# Property tests: under CI (CI set, as .ci/run does) every run tries the same examples, drawn
# from a seed derived from each test, and keeps no example database, so a red build is
# reproducible anywhere; elsewhere they draw afresh. Either way a failure prints the
# @reproduce_failure blob that replays it.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile("ci" if os.environ.get("CI", "").lower() in ("1", "true", "yes")
                      else "dev")
