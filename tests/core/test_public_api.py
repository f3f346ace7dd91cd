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
                     "streamer.pretty", "streamer.config",
                     "streamer.book"}


def _sources(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py")
                  if ".egg-info" not in p.parts and "build" not in p.parts)


def _plugin_sources() -> list[Path]:
    """The bundled plugins (the template too) and the test suite's plugin distributions."""
    files = _sources(ROOT / "plugins") + _sources(ROOT / "tests" / "plugin_dists")
    assert len(files) > 20  # the walk found the plugins
    assert any("plugin_dists" in p.parts for p in files)
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


def _is_module(package: str, name: str) -> bool:
    """Whether ``package.name`` is a module of the tree (``from streamer import _hookspecs``
    imports a private module of the package itself, not a private name of another)."""
    for base in (ROOT / "core" / "src", *(p / "src" for p in (ROOT / "plugins").iterdir())):
        where = base.joinpath(*package.split("."), name)
        if where.with_suffix(".py").is_file() or (where / "__init__.py").is_file():
            return True
    return False


def private_names_crossing_modules(path: Path) -> list[str]:
    """``from m import _x`` and ``m._x`` for a module ``m`` of ours (``streamer*``), where
    ``_x`` is not a module: a private name used outside the module that defines it. (The
    standard library's ``os._exit`` and the like are its public API.)"""
    tree = ast.parse(path.read_text(), str(path))
    modules: set[str] = set()
    wrong = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = node.module or ""
            if node.level:  # relative: resolved against the file's package below src/
                parts = path.parent.parts
                base = parts[parts.index("src") + 1:len(parts) - node.level + 1]
                source = ".".join([*base, *([source] if source else [])])
            if not source.startswith("streamer"):
                continue
            for alias in node.names:
                name = alias.name
                if _is_module(source, name):
                    modules.add(alias.asname or name)
                elif name.startswith("_") and not name.startswith("__"):
                    wrong.append(f"{node.lineno}: from {source} import {name}")
        elif isinstance(node, ast.Import):
            modules.update((a.asname or a.name).split(".")[0] for a in node.names
                           if a.name.startswith("streamer"))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in modules and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and not _is_module(node.value.id, node.attr)):
            wrong.append(f"{node.lineno}: {node.value.id}.{node.attr}")
    return wrong


def test_no_private_name_is_used_outside_its_module() -> None:
    """A ``_name`` is private to the module that defines it: one that another module needs is
    public there (or the two are one module). The core, the plugins, the test plugins."""
    files = _sources(ROOT / "core" / "src") + _plugin_sources()
    wrong = [f"{path.relative_to(ROOT)}:{line}" for path in files
             for line in private_names_crossing_modules(path)]
    assert wrong == []


def test_a_private_name_from_another_module_is_found(tmp_path: Path) -> None:
    bad = tmp_path / "src" / "streamer_x" / "user.py"
    bad.parent.mkdir(parents=True)
    bad.write_text("from streamer_x.maker import _helper\n"
                   "from .maker import _other\n"
                   "import os\n"
                   "from streamer import _hookspecs\n"
                   "os._exit(0)\n"
                   "_hookspecs._private\n")
    assert private_names_crossing_modules(bad) == [
        "1: from streamer_x.maker import _helper",
        "2: from streamer_x.maker import _other",
        "6: _hookspecs._private",
    ]


def test_no_plugin_imports_another_plugin() -> None:
    wrong = []
    for path in _plugin_sources():
        src = Path(*path.parts[:path.parts.index("src") + 1]) if "src" in path.parts else None
        own_packages = {p.name for p in src.iterdir() if p.is_dir()} if src else set()
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
