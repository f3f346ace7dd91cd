"""A command whose reader goes away (`streamer plugins | head -1`) ends quietly with 0."""

from __future__ import annotations

import subprocess
import sys


def test_closed_stdout_is_not_a_traceback() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "streamer", "plugins"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.read(1)  # one byte read, then the reader is gone like `head -c1`
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 0
    assert b"Traceback" not in err, err
