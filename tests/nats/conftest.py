"""The NATS tests' directory has no ``__init__.py`` on purpose: as a package it would be
named ``nats`` and shadow nats-py. Its helper module is made importable here instead."""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from streamer.testing import plugin_manager  # noqa: E402, F401
