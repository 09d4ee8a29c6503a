"""The package's import graph has no cycle, between modules and between subpackages.

Read statically with `ast`, so a test run does not need to import anything: every `import`
of a package module counts, including imports inside functions, because a lazy import only
hides a cycle (it still means the two modules cannot be understood, tested or moved apart).
Leaves (errors, io, render, litert, models.registry) import nothing above them; this keeps it so.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "nlighten_tf"
PACKAGE_DIR = Path(__file__).resolve().parents[1] / PACKAGE


def _module_name(path: Path, package_dir: Path) -> str:
    parts = path.relative_to(package_dir.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_modules(node: ast.AST, module: str, is_package: bool, modules: set[str]) -> list[str]:
    """The package modules one import statement loads (`from pkg import sub` loads `pkg.sub`)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name in modules]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:  # relative: `from . import x` inside pkg/mod.py is relative to pkg
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        source = ".".join([*base, node.module] if node.module else base)
    else:
        source = node.module or ""
    targets = []
    for alias in node.names:
        submodule = f"{source}.{alias.name}"
        if submodule in modules:
            targets.append(submodule)
        elif source in modules:
            targets.append(source)
    return targets


def module_graph(package_dir: Path = PACKAGE_DIR) -> dict[str, set[str]]:
    """module -> the package modules it imports anywhere in its body (itself excluded)."""
    paths = {_module_name(path, package_dir): path for path in sorted(package_dir.rglob("*.py"))}
    modules = set(paths)
    graph: dict[str, set[str]] = {}
    for module, path in paths.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        graph[module] = {
            target
            for node in ast.walk(tree)
            for target in _imported_modules(node, module, is_package, modules)
            if target != module
        }
    return graph


def subpackage_of(module: str) -> str:
    """`nlighten_tf.bench.latency` -> `bench`; a top-level module (`nlighten_tf.io`) is its own unit."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def subpackage_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The module graph collapsed onto subpackages, without edges inside one subpackage."""
    collapsed: dict[str, set[str]] = {}
    for module, targets in graph.items():
        unit = subpackage_of(module)
        collapsed.setdefault(unit, set()).update(
            subpackage_of(t) for t in targets if subpackage_of(t) != unit
        )
    return collapsed


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (`[a, b, ..., a]`) per strongly connected component that has one, sorted.

    Tarjan's algorithm, iterative so that a deep package cannot hit the recursion limit.
    """
    index: dict[str, int] = {}
    lowlink: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[set[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = lowlink[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = lowlink[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph.get(successor, ())))))
                    break
                if successor in on_stack:
                    lowlink[node] = min(lowlink[node], index[successor])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    lowlink[parent] = min(lowlink[parent], lowlink[node])
                if lowlink[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    if len(component) > 1 or node in graph.get(node, ()):
                        components.append(component)
    return sorted(_cycle_in(graph, component) for component in components)


def _cycle_in(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest cycle through the component's smallest member (breadth-first inside it)."""
    start = min(component)
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        next_frontier = []
        for node in frontier:
            for successor in sorted(graph.get(node, ())):
                if successor == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [*reversed(path), start]
                if successor in component and successor not in parents:
                    parents[successor] = node
                    next_frontier.append(successor)
        frontier = next_frontier
    raise AssertionError(f"{sorted(component)} is not a cycle")  # unreachable for an SCC


def _describe(cycles: list[list[str]]) -> str:
    return "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_cycle_finder_reports_a_cycle_and_ignores_a_diamond():
    diamond = {"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set()}
    assert find_cycles(diamond) == []
    looped = {**diamond, "d": {"e"}, "e": {"b"}, "x": {"x"}}
    assert find_cycles(looped) == [["b", "d", "e", "b"], ["x", "x"]]


def test_graph_reader_counts_lazy_relative_and_from_imports(tmp_path):
    package = tmp_path / PACKAGE
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "leaf.py").write_text("import os\n")
    (package / "sub" / "__init__.py").write_text("from nlighten_tf.sub.a import thing\n")
    (package / "sub" / "a.py").write_text("def f():\n    from nlighten_tf import leaf\n    from . import b\n")
    (package / "sub" / "b.py").write_text("from .a import f\nimport nlighten_tf.leaf\n")
    graph = module_graph(package)
    assert graph == {
        PACKAGE: set(),
        f"{PACKAGE}.leaf": set(),
        f"{PACKAGE}.sub": {f"{PACKAGE}.sub.a"},
        f"{PACKAGE}.sub.a": {f"{PACKAGE}.leaf", f"{PACKAGE}.sub.b"},
        f"{PACKAGE}.sub.b": {f"{PACKAGE}.sub.a", f"{PACKAGE}.leaf"},
    }
    assert find_cycles(graph) == [[f"{PACKAGE}.sub.a", f"{PACKAGE}.sub.b", f"{PACKAGE}.sub.a"]]
    assert subpackage_graph(graph) == {PACKAGE: set(), "leaf": set(), "sub": {"leaf"}}


# The leaves and what each may import from the package: everything else builds on them, and
# nothing in them reaches up (the package root only selects legacy Keras before TensorFlow).
LEAVES = {
    "errors": set(),
    "io": {"errors"},
    "render": {"io"},
    "litert": {"errors", PACKAGE},
    "keras_utils": set(),
}


def test_leaves_import_nothing_above_them():
    graph = subpackage_graph(module_graph())
    above = {leaf: sorted(graph[leaf] - allowed) for leaf, allowed in LEAVES.items() if graph[leaf] - allowed}
    assert not above, f"leaf modules importing more than their allowance: {above}"


def test_model_registry_imports_no_family():
    # Families import the registry to register into it; the package __init__ imports the families.
    imported = module_graph()[f"{PACKAGE}.models.registry"]
    assert imported <= {f"{PACKAGE}.models.weights"}, sorted(imported)


def test_modules_import_each_other_without_a_cycle():
    cycles = find_cycles(module_graph())
    assert not cycles, "import cycles between modules:\n" + _describe(cycles)


def test_subpackages_import_each_other_without_a_cycle():
    cycles = find_cycles(subpackage_graph(module_graph()))
    assert not cycles, "import cycles between subpackages:\n" + _describe(cycles)
