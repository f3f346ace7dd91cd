"""The core's modules import each other without a circle, counting every import (those under
``TYPE_CHECKING`` and inside functions too), and the operations listener reads the pipeline
through ``streamer._node.PipelineNodes``, never the runtime module it serves."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "core" / "src" / "streamer"
OPS_SERVER = ("streamer._metrics_http", "streamer._exposition", "streamer._ops_admission")


def _module_of(path: Path) -> str:
    return "streamer" if path.name == "__init__.py" else f"streamer.{path.stem}"


def import_graph() -> dict[str, set[str]]:
    modules = {_module_of(p): p for p in CORE.glob("*.py")}
    assert len(modules) > 25  # the walk found the core
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name in modules)
            elif isinstance(node, ast.ImportFrom) and node.module in modules:
                for alias in node.names:  # ``from streamer import clock`` is the submodule
                    sub = f"{node.module}.{alias.name}"
                    found.add(sub if sub in modules else node.module)
        found.discard(name)
        graph[name] = found
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected set of more than one module (Tarjan, iterative enough for
    the few dozen modules of the core)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(name: str) -> None:
        index[name] = low[name] = len(index)
        stack.append(name)
        for dep in sorted(graph[name]):
            if dep not in index:
                visit(dep)
                low[name] = min(low[name], low[dep])
            elif dep in stack:
                low[name] = min(low[name], index[dep])
        if low[name] == index[name]:
            members = []
            while True:
                member = stack.pop()
                members.append(member)
                if member == name:
                    break
            if len(members) > 1:
                out.append(sorted(members))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return out


def test_the_core_has_no_import_circle() -> None:
    assert circles(import_graph()) == []


def test_the_circle_finder_finds_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c"]]


def test_the_ops_server_never_imports_the_runtime() -> None:
    graph = import_graph()
    for module in OPS_SERVER:
        assert "streamer._runtime" not in graph[module], module
    assert "streamer._node" in graph["streamer._exposition"]
