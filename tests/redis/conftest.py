"""Fixtures of the redis and storage sink tests.

No __init__.py here on purpose: with ``tests`` on sys.path a package named ``redis`` would
shadow redis-py. The helpers module beside this file is put on sys.path instead.
"""

from __future__ import annotations

import os
import sys

import pytest
import trio.testing

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture
def mock_clock() -> trio.testing.MockClock:
    """Virtual time that jumps when every task has been idle for 250 ms of real time.

    Not autojump_threshold=0: the writer's worker thread runs in real time, and an instant
    jump while a task waits for it would fire the test's own deadline. 20 ms was too short on
    a loaded 2-core machine (a write then took longer, and the jump went to the deadline)."""
    return trio.testing.MockClock(autojump_threshold=0.25)
