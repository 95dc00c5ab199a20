"""The project's import graph, read with `ast` (imports inside functions included): no cycles, and the
layers point one way — losses and models never reach up into the trainer, the pipeline or evaluation."""

from __future__ import annotations

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("configs", "models", "losses", "input_pipeline", "evaluation", "training", "interop", "launch")


def _project_modules() -> dict[str, str]:
    """{dotted module name: file path} for main.py and every .py file of the project's packages."""
    modules = {"main": os.path.join(ROOT, "main.py")}
    for package in PACKAGES:
        for folder, _, files in os.walk(os.path.join(ROOT, package)):
            for file in files:
                if file.endswith(".py"):
                    path = os.path.join(folder, file)
                    name = os.path.relpath(path, ROOT)[: -len(".py")].replace(os.sep, ".")
                    modules[name.removesuffix(".__init__")] = path
    return modules


def _imported_names(tree: ast.AST) -> set[str]:
    """Dotted names every import statement of `tree` may load: `from a import b` gives a.b and a."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def import_graph() -> dict[str, set[str]]:
    """{module: project modules it imports}."""
    modules = _project_modules()
    graph = {}
    for name, path in modules.items():
        with open(path) as f:
            imported = _imported_names(ast.parse(f.read(), path))
        graph[name] = {m for m in imported if m in modules and m != name and m not in PACKAGES}
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's strongly connected components with more than one module (every import cycle lies in one)."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return components


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    assert "training.validation" in graph["main"]
    assert "training.loop" in graph["main"]  # imported inside main()


def test_no_import_cycles():
    cycles = strongly_connected(import_graph())
    assert not cycles, f"import cycles among {[sorted(c) for c in cycles]}"


LAYERS = [
    # (package, packages it must not import)
    ("losses", ("training", "evaluation", "input_pipeline", "launch", "interop")),
    ("models", ("losses", "training", "evaluation", "input_pipeline", "launch")),
    # configs are data the rest reads: evaluation imports the evaluator option table from configs/evaluators.py
    ("configs", ("training", "evaluation", "launch")),
]
# Layer breaches that are allowed for now. It is empty: the host work two objectives did (reading a checkpoint,
# rendering memory-bank data) is the trainer's (training/objective_inputs.py). This list may only shrink.
KNOWN_LAYER_BREACHES: set[str] = set()


@pytest.mark.parametrize("package, forbidden", LAYERS, ids=[layer[0] for layer in LAYERS])
def test_lower_layers_do_not_import_upper_ones(package, forbidden):
    breaches = {
        f"{module} imports {target}"
        for module, targets in import_graph().items()
        if module.split(".")[0] == package
        for target in targets
        if target.split(".")[0] in forbidden
    }
    assert breaches <= KNOWN_LAYER_BREACHES, sorted(breaches - KNOWN_LAYER_BREACHES)


def test_the_known_breaches_still_exist():
    """A breach that is fixed leaves KNOWN_LAYER_BREACHES, so that it cannot come back unnoticed."""
    graph = import_graph()
    for breach in KNOWN_LAYER_BREACHES:
        module, _, target = breach.partition(" imports ")
        assert target in graph[module], f"{breach} is fixed: drop it from KNOWN_LAYER_BREACHES"
