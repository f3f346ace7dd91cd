"""Fixtures of the Bybit source tests: the fake Bybit and a collecting ``emit``."""

from __future__ import annotations

import pytest
from bybit.harness import Collector
from fakebybit.fixtures import fake_bybit  # noqa: F401


@pytest.fixture
def collector() -> Collector:
    return Collector()
