"""Fixtures of the Bybit source tests (``fake_bybit`` comes from tests/conftest.py)."""

from __future__ import annotations

import pytest
from bybit.harness import Collector


@pytest.fixture
def collector() -> Collector:
    return Collector()
