"""Fixtures of the aggregate tests: the fake Bybit (tests/fakebybit) and small helpers."""

from __future__ import annotations

from fakebybit.fixtures import fake_bybit  # noqa: F401  (pytest fixture)
