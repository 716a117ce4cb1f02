"""The package's import graph: no cycles, and no module importing from a layer above it.

Why: ``train/tasks.py`` once imported every family, each of which imported the runner back (a
cycle of five modules). A cycle works until someone moves one import to module level; a step
up the layers (the control code importing the pipeline, say) is how the next cycle starts. The
graph is read from the source with ``ast``, counting imports inside functions too (they are
real edges, only deferred) and skipping ``if TYPE_CHECKING:`` blocks (they never run). The
parent packages' ``__init__`` that Python runs on the way to a submodule are not counted.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "cadenza"

# Lowest first. A module belongs to the longest prefix listed; it may import its own layer and
# any layer below. ``audio.format`` is the canonical grid's constants (no imports of its own),
# ``cli.progress`` is the progress bar every long step uses (training too),
# and ``eval.run``/``eval.tables``/``eval.report``/``eval.cases`` run whole evaluations through the pipeline.
LAYERS: list[tuple[str, ...]] = [
    ("cadenza.errors", "cadenza.fsutil", "cadenza.audio.format", "cadenza.limits", "cadenza.config", "cadenza.checkpoint", "cadenza.registry", "cadenza.protocols", "cadenza.cli.progress"),
    ("cadenza.audio",),
    ("cadenza.controls",),
    ("cadenza.conditioning", "cadenza.data", "cadenza.representations"),
    ("cadenza.generators", "cadenza.eval"),
    ("cadenza.train",),
    ("cadenza.pipeline",),
    ("cadenza.eval.run", "cadenza.eval.tables", "cadenza.eval.report", "cadenza.eval.cases", "cadenza.history"),
    ("cadenza.app", "cadenza.cli", "cadenza.__main__", "cadenza"),
]

# Cycles allowed to remain: none (the last two, eval.run <-> eval.tables and cli <-> cli.train,
# were broken by moving TABLES into tables.py and print_error into cli/errors.py).
KNOWN_CYCLES: set[frozenset[str]] = set()


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> set[str]:
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("cadenza"))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.startswith("cadenza"):
            for alias in node.names:  # "from cadenza.cli import train" names a module; "… import app" an object
                full = f"{node.module}.{alias.name}"
                found.add(full if full in MODULES else node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for name, path in MODULES.items():
        deps = {_resolve(d) for d in _imports(ast.parse(path.read_text()))}
        graph[name] = {d for d in deps if d and d != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[frozenset[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        comp.add(member)
                        if member == node:
                            break
                    if len(comp) > 1:
                        out.append(frozenset(comp))
    return out


def layer_of(module: str) -> int:
    best, best_len = None, -1
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = i, len(prefix)
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best


def test_cycle_finder_finds_a_cycle() -> None:
    """The checker itself: a three-module loop is one component, a tree none."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [frozenset("abc")]
    assert cycles({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_no_import_cycles() -> None:
    found = set(cycles(import_graph()))
    new = found - KNOWN_CYCLES
    assert not new, "import cycles: " + "; ".join(" <-> ".join(sorted(c)) for c in new)
    gone = KNOWN_CYCLES - found
    assert not gone, f"these cycles are fixed: remove them from KNOWN_CYCLES: {gone}"


def test_the_training_cycle_is_gone() -> None:
    """The cycle issue 18 names: tasks.py imports no family, no family module is imported by the runner."""
    graph = import_graph()
    assert not graph["cadenza.train.tasks"] & {"cadenza.train.generator", "cadenza.train.vocoder", "cadenza.train.beats", "cadenza.train.clap", "cadenza.train.runner"}
    assert not graph["cadenza.train.runner"] & {"cadenza.train.generator", "cadenza.train.vocoder", "cadenza.train.beats", "cadenza.train.clap"}


def test_no_module_imports_from_a_layer_above() -> None:
    graph = import_graph()
    bad = sorted(f"{m} (layer {layer_of(m)}) imports {d} (layer {layer_of(d)})" for m, deps in graph.items() for d in deps if layer_of(d) > layer_of(m))
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("module", ["cadenza.registry", "cadenza.protocols", "cadenza.controls.registry"])
def test_the_bottom_modules_stay_small_in_what_they_import(module: str) -> None:
    """The registries and protocols import no family: families import them."""
    deps = import_graph()[module]
    assert all(layer_of(d) <= layer_of("cadenza.controls") for d in deps), deps
