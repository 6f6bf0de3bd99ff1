"""The package's layers, read from the imports of every module under src/tracebus.

core <- service <- nats <- cli: a layer imports only those below it (and itself); the readers
(``_tools``) read files and import core code only; nothing imports the facade
(``tracebus/__init__``), which imports what it exports; and no two modules import each other,
directly or round a loop. Every import counts: at module level, inside a function or under
``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / "src" / "tracebus"

#: Which layers each layer may import.
ALLOWED = {
    "core": {"core"},
    "tools": {"core", "tools"},
    "service": {"core", "service"},
    "nats": {"core", "service", "nats"},
    "cli": {"core", "tools", "service", "nats", "cli"},
    "facade": {"core", "tools", "service", "nats", "cli"},
}

#: Imports known to break the rules, each with the change that removes it.
KNOWN: set[tuple[str, str]] = set()


def layer_of(module: str) -> str:
    parts = module.split(".")
    if module == "tracebus":
        return "facade"
    if parts[1] in ("_service", "service"):
        return "service"
    if parts[1] in ("_nats", "nats"):
        return "nats"
    if parts[1] == "_tools":
        return "tools"
    if parts[1] in ("cli", "__main__"):
        return "cli"
    return "core"


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


MODULES = _modules()


def _imported(module: str, path: Path, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    """The package's modules that ``node`` imports (``from . import name`` is the submodule
    ``name`` when there is one, else the package itself)."""
    if isinstance(node, ast.Import):
        targets = [alias.name for alias in node.names]
    else:
        base = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            base = base.rpartition(".")[0]
        target = (f"{base}.{node.module}" if node.module else base) if node.level else node.module
        assert target is not None
        targets = [
            f"{target}.{alias.name}" if f"{target}.{alias.name}" in MODULES else target
            for alias in node.names
        ]
    for target in targets:
        while target.startswith("tracebus") and target not in MODULES:
            target = target.rpartition(".")[0]
        if target in MODULES and target != module:
            yield target


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        graph[module] = {
            target
            for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom)
            for target in _imported(module, path, node)
        }
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """The components of more than one module (Tarjan's algorithm, without recursion)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for target in edges:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph[target]))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))
    return components


def test_no_layer_imports_a_layer_above_it() -> None:
    graph = import_graph()
    crossing = {
        (module, target)
        for module, targets in graph.items()
        for target in targets
        if layer_of(target) not in ALLOWED[layer_of(module)]
    }
    assert crossing - KNOWN == set()
    assert KNOWN - crossing == set(), "a known exception is gone: remove it from KNOWN"


def test_nothing_imports_the_facade() -> None:
    graph = import_graph()
    assert sorted(module for module, targets in graph.items() if "tracebus" in targets) == []


def test_no_module_imports_itself_round_a_loop() -> None:
    assert strongly_connected(import_graph()) == []


def test_the_checks_see_what_they_are_meant_to_see() -> None:
    graph = import_graph()
    assert {"tracebus._queue", "tracebus._sinks", "tracebus._stamping"} <= graph["tracebus._writer"]
    assert "tracebus._queue" in graph["tracebus._service._delivery"]
    assert layer_of("tracebus._nats._collector") == "nats"
    assert layer_of("tracebus._sinks._run_files") == "core"
    loop = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert strongly_connected(loop) == [["a", "b", "c"]]
