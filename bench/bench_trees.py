"""What the in-process A/B benches share: a source tree of another commit, and the machine.

An A/B bench runs its measuring function in a fresh interpreter per run with ``PYTHONPATH``
naming the ``src`` folders of the tree under test: this checkout, or a commit taken out of
git into a temporary folder (:func:`extract`). The installed packages (trio, msgspec, ...)
are the same for both sides; only the streamer's own code changes.
"""

from __future__ import annotations

import os
import platform
import subprocess
import tarfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def commit_label(rev: str = "HEAD", parts: Sequence[str] = ()) -> str:
    """The short commit, and whether ``parts`` of the checkout differ from it."""
    short = git("rev-parse", "--short", rev)
    if rev == "HEAD" and parts and git("status", "--porcelain", "--", *parts):
        return f"{short} + uncommitted changes"
    return short


def extract(rev: str, into: Path, parts: Sequence[str]) -> None:
    """The folders ``parts`` of commit ``rev`` into the folder ``into``."""
    archive = into / "tree.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), rev, *parts],
                   check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")


def source_path(tree: Path, parts: Sequence[str]) -> str:
    """``PYTHONPATH`` for the packages of ``parts`` (``core``, ``plugins/NAME``) of ``tree``."""
    return os.pathsep.join(str(tree / part / "src") for part in parts)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_line(load_before: Sequence[float], load_after: Sequence[float]) -> str:
    return (f"Machine: {cpu_model()}, {os.cpu_count()} CPUs, {platform.platform()}, Python "
            f"{platform.python_version()}. Load average (1, 5, 15 min) before "
            f"{tuple(round(x, 2) for x in load_before)}, after "
            f"{tuple(round(x, 2) for x in load_after)}.")
