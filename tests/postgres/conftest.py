"""Fixtures of the postgres sink tests (the server itself: tests/postgres_server.py).

No __init__.py here, as in tests/redis: the helpers module beside this file is put on
sys.path instead."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
