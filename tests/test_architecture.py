"""The package's layers point one way: the import graph of lecun1989/ has no cycle, and each
subpackage imports only the layers below it (docs/architecture.md)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lecun1989"
# Bottom to top; a unit may import units of lower layers only (the same layer: never).
LAYERS = [
    {"errors", "paper"},
    {"config", "files"},
    {"model", "data", "stats"},
    {"optim"},
    {"engines"},
    {"train"},
    {"analysis"},
    {"sweeps"},
    {"cli"},
]
ROOT = "lecun1989"  # the package's __init__ and __main__: the public API, above everything


def _unit(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != ROOT:
        return None
    return ROOT if len(parts) == 1 else parts[1]


def import_graph(package: Path = PACKAGE) -> dict[str, dict[str, list[str]]]:
    """{unit: {imported unit: [files importing it]}} over every import statement of the
    package, those inside functions included. A unit is a subpackage or top-level module."""
    graph: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package.parent).with_suffix("")
        source = ROOT if len(rel.parts) == 2 and rel.parts[1] in ("__init__", "__main__") \
            else rel.parts[1]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = ([f"{ROOT}.{alias.name}" for alias in node.names]
                           if node.module == ROOT else [node.module])
            else:
                continue
            for target in targets:
                unit = _unit(target)
                if unit is not None and unit != source:
                    graph[source][unit].append(str(rel))
    return graph


def find_cycle(graph: dict[str, dict[str, list[str]]]) -> list[str] | None:
    """One cycle of units (first unit repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(unit: str) -> list[str] | None:
        state[unit] = 1
        path.append(unit)
        for nxt in sorted(graph.get(unit, {})):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[unit] = 2
        return None

    for unit in sorted(graph):
        if unit not in state:
            found = visit(unit)
            if found:
                return found
    return None


def test_the_import_graph_has_no_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, f"import cycle: {' -> '.join(cycle)}"


def test_each_unit_imports_only_lower_layers():
    level = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}
    units = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" or (p / "__init__.py").is_file())
             and p.stem not in ("__init__", "__main__")}
    assert units == set(level), "every unit of the package has a layer in LAYERS"
    wrong = [f"{src} -> {dst} ({', '.join(files)})"
             for src, deps in import_graph().items() if src != ROOT
             for dst, files in deps.items() if level[dst] >= level[src]]
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


@pytest.mark.parametrize(("graph", "cycle"), [
    ({"a": {"b": []}, "b": {"c": []}, "c": {"a": []}}, ["a", "b", "c", "a"]),
    ({"a": {"b": []}, "b": {"c": []}}, None),
    ({"a": {"b": [], "c": []}, "c": {"c2": []}, "c2": {"c": []}}, ["c", "c2", "c"]),
])
def test_the_cycle_finder_finds_cycles(graph, cycle):
    assert find_cycle(graph) == cycle


def test_the_graph_sees_imports_inside_functions(tmp_path):
    pkg = tmp_path / ROOT
    (pkg / "low").mkdir(parents=True)
    (pkg / "high").mkdir()
    (pkg / "low" / "__init__.py").write_text("def f():\n    from lecun1989.high import g\n")
    (pkg / "high" / "__init__.py").write_text("from lecun1989 import low\n")
    graph = import_graph(pkg)
    assert find_cycle(graph) == ["high", "low", "high"]
