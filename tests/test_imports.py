"""The import graph of gan_jax, read from the source with `ast`: no cycles, and library modules never
import a command-line module.

Every `import` / `from ... import` of a gan_jax module counts, at module level or inside a function;
`from package import name` counts as importing the submodule when `name` is one, else the package.
Imports under `if __name__ == "__main__":` run only when the module is the program (under the name
__main__), so they are the module's command line and are left out of both checks.
"""
from __future__ import annotations

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "gan_jax"
# Command-line modules: entry points that parse flags and run things; libraries must not import them.
CLI_MODULES = frozenset({"gan_jax.reproduce", "gan_jax.launch", "gan_jax.sample"})
TOP_LEVEL_CLIS = frozenset({"launch"})  # launch.py, outside the package


def module_files() -> dict[str, str]:
    """Dotted module name -> path of every .py file under gan_jax/ (a package's __init__ is the package)."""
    out = {}
    for directory, _, files in os.walk(os.path.join(ROOT, PACKAGE)):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(directory, f)
                parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
                out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = module_files()
CLIS = CLI_MODULES | {m for m in MODULES if m.rsplit(".", 1)[-1] == "__main__"}


def _is_main_guard(node: ast.stmt) -> bool:
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__"
            and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in node.test.comparators))


def _resolve(module: str, node: ast.ImportFrom) -> str:
    """The absolute module a `from` import names (relative imports resolved against `module`)."""
    if not node.level:
        return node.module or ""
    package = module if MODULES[module].endswith("__init__.py") else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def imports_of(module: str) -> list[tuple[str, int]]:
    """(imported gan_jax module or top-level CLI, line) of every import statement in `module` outside
    its `__main__` guard."""
    with open(MODULES[module], encoding="utf-8") as f:
        tree = ast.parse(f.read(), MODULES[module])
    body = [node for node in tree.body if not _is_main_guard(node)]
    found = []
    for node in (n for top in body for n in ast.walk(top)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, node)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        found += [(t, node.lineno) for t in targets
                  if t in MODULES or t in TOP_LEVEL_CLIS or t.split(".")[0] in TOP_LEVEL_CLIS]
    return found


GRAPH = {m: imports_of(m) for m in sorted(MODULES)}


def find_cycle(graph: dict[str, list[tuple[str, int]]]) -> list[tuple[str, int]] | None:
    """One cycle as [(module, line of its import of the next), ...], or None (iterative DFS colouring)."""
    colour = {m: 0 for m in graph}  # 0 unvisited, 1 on the current path, 2 done
    for start in graph:
        if colour[start]:
            continue
        path: list[tuple[str, int]] = []
        stack = [(start, iter(graph[start]))]
        colour[start] = 1
        while stack:
            node, edges = stack[-1]
            for target, line in edges:
                if target not in graph:
                    continue
                if colour[target] == 1:
                    names = [m for m, _ in stack]
                    cycle = path[names.index(target):] + [(node, line)]
                    return cycle
                if colour[target] == 0:
                    colour[target] = 1
                    path.append((node, line))
                    stack.append((target, iter(graph[target])))
                    break
            else:
                colour[node] = 2
                stack.pop()
                if path:
                    path.pop()
    return None


def _describe(cycle: list[tuple[str, int]]) -> str:
    return " -> ".join(f"{m} (line {line})" for m, line in cycle) + f" -> {cycle[0][0]}"


def test_the_package_is_found():
    assert {"gan_jax", "gan_jax.metrics.features", "gan_jax.reproduce"} <= set(MODULES)
    assert "gan_jax.data.__main__" in CLIS


def test_the_import_graph_has_no_cycle():
    cycle = find_cycle(GRAPH)
    assert cycle is None, f"import cycle: {_describe(cycle)}"


def test_the_cycle_finder_reports_a_planted_cycle():
    graph = {"a": [("b", 1)], "b": [("c", 2), ("d", 3)], "c": [("a", 4)], "d": []}
    assert find_cycle(graph) == [("a", 1), ("b", 2), ("c", 4)]
    assert find_cycle({"a": [("b", 1)], "b": [], "c": [("a", 2), ("b", 3)]}) is None


@pytest.mark.parametrize("module", sorted(set(MODULES) - CLIS))
def test_library_modules_do_not_import_command_line_modules(module):
    bad = [(t, line) for t, line in GRAPH[module]
           if t in CLIS or t.split(".")[0] in TOP_LEVEL_CLIS]
    assert not bad, f"{module} imports command-line modules: " + ", ".join(f"{t} (line {line})" for t, line in bad)
