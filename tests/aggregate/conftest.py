"""Fixtures of the aggregate tests: the Bybit simulator (``fake_bybit``, tests/bybit_simulator.py)
and small helpers."""

from __future__ import annotations

from bybit_simulator import fake_bybit  # noqa: F401  (pytest fixture)
