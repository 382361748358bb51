"""The package's layout: no import cycle, and one module that touches Optuna's internals."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "rnnsweep"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def _module_level_imports(tree: ast.Module):
    """Import statements run when the module is imported: not in functions or classes'
    methods, not under ``if TYPE_CHECKING:``."""
    stack: list[ast.AST] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node):
                stack.extend(node.body)
            stack.extend(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody):
                stack.extend(block)
            for h in node.handlers:
                stack.extend(h.body)
        elif isinstance(node, ast.With):
            stack.extend(node.body)
        elif isinstance(node, ast.ClassDef):
            stack.extend(n for n in node.body if not isinstance(n, ast.FunctionDef))


def import_graph() -> dict[str, set[str]]:
    files = sorted(PKG.rglob("*.py"))
    modules = {_module_name(p): p for p in files}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        is_pkg = path.name == "__init__.py"
        for node in _module_level_imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                if node.level:  # relative: resolve against this module's package
                    base = mod.split(".")
                    base = base if is_pkg else base[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    origin = ".".join(base + ([node.module] if node.module else []))
                else:
                    origin = node.module or ""
                # ``from pkg import sub`` needs only the submodule (Python imports it
                # even while pkg's __init__ is half-run); ``from pkg import name`` needs
                # pkg's __init__ to have defined it: an edge to pkg.
                targets = [
                    f"{origin}.{a.name}" if f"{origin}.{a.name}" in modules else origin
                    for a in node.names
                ]
            for t in targets:
                if t in modules and t != mod:
                    graph[mod].add(t)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(graph, WHITE)
    path: list[str] = []

    def visit(u: str) -> list[str] | None:
        colour[u] = GREY
        path.append(u)
        for v in sorted(graph[u]):
            if colour[v] == GREY:
                return path[path.index(v) :] + [v]
            if colour[v] == WHITE and (c := visit(v)):
                return c
        path.pop()
        colour[u] = BLACK
        return None

    for u in sorted(graph):
        if colour[u] == WHITE and (c := visit(u)):
            return c
    return None


def test_the_graph_sees_known_edges():
    g = import_graph()
    assert "rnnsweep.store.queue" in g["rnnsweep.store.db"]
    assert "rnnsweep.study.optuna_bridge" in g["rnnsweep.study.create"]
    assert "rnnsweep.kernels._native" in g["rnnsweep.kernels.fused"]
    # TYPE_CHECKING-only imports are not edges
    assert "rnnsweep.study.resolved" not in g["rnnsweep.study.create"]


def test_find_cycle_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_among_rnnsweep_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


# Optuna's private names: attributes of its objects, and its private modules
# (``optuna._x``, ``optuna.storages._rdb``); not its public dunders (``optuna.__version__``).
PRIVATE = re.compile(r"\._storage\b|\._trial_id\b|\._study_id\b|\boptuna(\.\w+)*\._[a-z]")


def test_only_the_optuna_bridge_touches_optunas_private_attributes():
    touching = sorted(
        str(p.relative_to(PKG.parent)) for p in PKG.rglob("*.py") if PRIVATE.search(p.read_text())
    )
    assert touching == ["rnnsweep/study/optuna_bridge.py"]
