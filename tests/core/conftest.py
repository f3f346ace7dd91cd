from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

DISTS = Path(__file__).resolve().parents[1] / "plugin_dists"


@pytest.fixture(scope="session")
def third_party_plugins(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pip-install the test-only plugin distributions into a private folder, as a user
    would install a plugin from PyPI; put the folder on PYTHONPATH to use them."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--target", str(target),
         str(DISTS / "streamer-demo"), str(DISTS / "streamer-broken"),
         str(DISTS / "streamer-misspelt")],
        check=True, timeout=300,
    )
    return target


@pytest.fixture
def plugin_env(third_party_plugins: Path):  # type: ignore[no-untyped-def]
    """``plugin_env(**extra)``: an environment where the third-party plugins are installed."""

    def make(**extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMER_")}
        env["PYTHONPATH"] = os.pathsep.join([str(third_party_plugins), env.get("PYTHONPATH", "")])
        env.update(extra)
        return env

    return make
