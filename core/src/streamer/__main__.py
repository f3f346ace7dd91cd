"""``python -m streamer``: the ``streamer`` command."""

from __future__ import annotations

import sys

from streamer._cli import main

if __name__ == "__main__":
    sys.exit(main())
