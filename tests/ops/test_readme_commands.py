"""Commands the README tells a newcomer to type work as written, from the repository root."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from proc_io import readline_within

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_command_starts_the_simulated_bybit():
    found = re.search(r"`(\.venv/bin/python -m streamer_bybit\.simulator[^`]*)`",
                      (ROOT / "README.md").read_text())
    assert found, "README.md names the command that starts the simulated Bybit"
    words = shlex.split(found.group(1))
    argv = [sys.executable, *words[1:]]  # the suite's interpreter is the venv's python
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        line = readline_within(proc.stdout, 30, "python -m streamer_bybit.simulator")
        assert json.loads(line)["ws_linear"].startswith("ws://127.0.0.1:"), line
    finally:
        proc.kill()
        proc.wait(timeout=10)
