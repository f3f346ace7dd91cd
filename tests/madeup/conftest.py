from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

DIST = Path(__file__).resolve().parents[1] / "plugin_dists" / "streamer-madeup"


@pytest.fixture(scope="session")
def madeup_plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pip-install the made-up exchange's plugin into a private folder, as a user would
    install a third-party plugin (as tests/core/conftest.py does for the others)."""
    target = tmp_path_factory.mktemp("madeup-site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--target", str(target), str(DIST)],
        check=True, timeout=300,
    )
    return target


@pytest.fixture
def madeup_env(madeup_plugin: Path) -> dict[str, str]:
    """An environment where the made-up exchange's plugin is installed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMER_")}
    env["PYTHONPATH"] = os.pathsep.join([str(madeup_plugin), env.get("PYTHONPATH", "")])
    return env
