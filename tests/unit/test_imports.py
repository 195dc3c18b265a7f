"""No import cycles between the project's own modules.

A cycle works until someone imports the modules in the other order, and hiding one half of it inside a
function only moves the failure to the first call; so every import counts here, wherever it is written.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("shared", "services", "devstack", "bench", "tools")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    """Dotted name -> file of every module under PACKAGES."""
    return {module_name(path): path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


def imported_names(tree: ast.AST, *, module: str, is_package: bool) -> set[str]:
    """Every dotted name an import anywhere in `tree` names, relative imports resolved.

    `from a import b` gives `a.b`: `b` may be a submodule, and when it is not, `a.b` falls back to `a` below.
    """
    names: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            names.update(base if alias.name == "*" else f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports: for each imported name, the deepest project module it names."""
    modules = project_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        targets: set[str] = set()
        for imported in imported_names(tree, module=name, is_package=path.name == "__init__.py"):
            parts = imported.split(".")
            while parts and ".".join(parts) not in modules:
                parts.pop()
            if parts and ".".join(parts) != name:
                targets.add(".".join(parts))
        graph[name] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as [a, b, ..., a], or None; depth-first, iterative, deterministic."""
    done: set[str] = set()
    for root in sorted(graph):
        if root in done:
            continue
        path = [root]
        stack = [iter(sorted(graph[root]))]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                stack.pop()
                done.add(path.pop())
            elif nxt in path:
                return [*path[path.index(nxt) :], nxt]
            elif nxt not in done:
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_imports_are_read_wherever_they_are_written() -> None:
    tree = ast.parse(
        "import a.b\n"
        "from . import sibling\n"
        "from ..up import name\n"
        "def f():\n"
        "    from c.d import e\n"
        "try:\n"
        "    import g\n"
        "except ImportError:\n"
        "    pass\n"
    )
    assert imported_names(tree, module="p.q.m", is_package=False) == {"a.b", "p.q.sibling", "p.up.name", "c.d.e", "g"}
    assert imported_names(ast.parse("from . import x"), module="p.q", is_package=True) == {"p.q.x"}


def test_the_graph_sees_the_project() -> None:
    graph = import_graph()
    assert "shared.settings" in graph["services.scoring.__main__"]
    assert "services.scoring.migrate" in graph["bench.phases"]  # imported inside a function
    db = graph["shared.adapters.db"]  # from shared.adapters import pgarrays
    assert "shared.adapters.pgarrays" in db and "shared.adapters" not in db


def test_a_cycle_is_found_and_reported() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"b"}}) is None


def test_no_service_and_nothing_shared_imports_the_development_stack() -> None:
    """The production image has no devstack/ (nor its wheels): nothing it runs may import it."""
    graph = import_graph()
    offenders = sorted(
        m
        for m, deps in graph.items()
        if m.split(".")[0] in ("shared", "services") and any(d.split(".")[0] == "devstack" for d in deps)
    )
    assert offenders == []


def test_nothing_outside_the_tests_imports_them() -> None:
    """The bench and the tools run without tests/: what both need lives in devstack (devstack.runner)."""
    offenders = []
    for name, path in project_modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        names = imported_names(tree, module=name, is_package=path.name == "__init__.py")
        if any(n.split(".")[0] == "tests" for n in names):
            offenders.append(name)
    assert offenders == []


def test_no_module_imports_itself_back() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])
