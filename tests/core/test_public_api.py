"""The bundled plugins use only the core's public API: ``streamer`` and its documented
public submodules. Everything else in the core is private (``streamer._*``) and may change."""

from __future__ import annotations

import ast
from pathlib import Path

import streamer

ROOT = Path(__file__).resolve().parents[2]
#: The public submodules, as docs/writing_plugins.md lists them.
PUBLIC_SUBMODULES = {"streamer.wire", "streamer.intervals", "streamer.clock", "streamer.history",
                     "streamer.validators", "streamer.net", "streamer.testing",
                     "streamer.pretty", "streamer.book"}


def _plugin_sources() -> list[Path]:
    files = sorted(
        p for p in (ROOT / "plugins").rglob("*.py")
        if ".egg-info" not in p.parts and "build" not in p.parts
    )
    assert len(files) > 20  # the walk found the plugins
    return files


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name, []) for a in node.names]
    return found


def test_bundled_plugins_import_only_public_names() -> None:
    wrong = []
    for path in _plugin_sources():
        for line, module, names in _imports(path):
            where = f"{path.relative_to(ROOT)}:{line}"
            if module == "streamer":
                wrong += [f"{where}: streamer.{n} is not in streamer.__all__"
                          for n in names if n not in streamer.__all__
                          and f"streamer.{n}" not in PUBLIC_SUBMODULES]
            elif module.startswith("streamer.") and module not in PUBLIC_SUBMODULES:
                wrong.append(f"{where}: {module} is private")
    assert wrong == []


def test_no_plugin_imports_another_plugin() -> None:
    wrong = []
    for path in _plugin_sources():
        own = path.relative_to(ROOT / "plugins").parts[0]
        own_packages = {p.name for p in (ROOT / "plugins" / own / "src").iterdir()
                        if p.is_dir()} if (ROOT / "plugins" / own / "src").is_dir() else set()
        for line, module, _ in _imports(path):
            top = module.split(".")[0]
            if top.startswith("streamer_") and top not in own_packages:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: imports {module}")
    assert wrong == []


def test_every_public_name_is_importable_and_documented() -> None:
    doc = (ROOT / "docs" / "writing_plugins.md").read_text()
    for name in streamer.__all__:
        assert hasattr(streamer, name), name
        assert f"`{name}`" in doc, f"{name} is exported but not listed in writing_plugins.md"
    for module in PUBLIC_SUBMODULES:
        assert f"`{module}`" in doc, module


def test_the_entry_point_group_is_streamer_plugins_everywhere() -> None:
    """Third-party plugins publish under ``streamer.plugins``: the name is part of the API."""
    try:
        import tomllib
    except ImportError:  # pragma: no cover - Python 3.10
        import tomli as tomllib

    from streamer._plugins import ENTRY_POINT_GROUP

    assert ENTRY_POINT_GROUP == "streamer.plugins"
    projects = sorted((ROOT / "plugins").glob("*/pyproject.toml"))
    projects += sorted((ROOT / "tests" / "plugin_dists").glob("*/pyproject.toml"))
    assert len(projects) >= 8
    for path in projects:
        entry_points = tomllib.loads(path.read_text())["project"]["entry-points"]
        assert list(entry_points) == ["streamer.plugins"], path
