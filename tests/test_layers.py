"""The shape of the house, read from the source with ``ast`` (nothing is imported or run).

Three rules (issue 24; README, "Design"):

* **Imports run downward only.** The layers, bottom to top, are :data:`LAYERS`:
  ``base < stores < extract < pipelines < fusion``. A module may import its own package and
  any package below it, never one above.
* **No import cycles among modules.** The module graph is defined below; every strongly
  connected component of more than one module (or a module importing itself) is a cycle.
* **No module over** :data:`MAX_LINES` **lines**.

The module graph
----------------
* A node is a module of one of the :data:`LAYERS` packages: ``a/b.py`` is ``a.b``,
  ``a/__init__.py`` is ``a``. Tests and ``scripts/`` are not nodes: nothing imports them.
* Every ``import`` statement in the file counts, wherever it stands: at the top, inside a
  function (the lazy imports), under ``if TYPE_CHECKING``. Relative imports are resolved.
* ``import a.b.c`` is an edge to ``a.b.c``. ``from a.b import c`` is an edge to ``a.b.c``
  when ``a/b/c.py`` or ``a/b/c/__init__.py`` exists, otherwise to ``a.b`` (``c`` is a name in
  it). The parent packages that Python initialises on the way are not edges: an edge names
  the module whose contents the importer uses.
* Imports of anything outside the :data:`LAYERS` packages (numpy, the standard library) are
  not edges.
* For cycles only, an edge from a package's ``__init__`` to one of its own submodules is left
  out: that is how a package registers its members (``extract/__init__`` imports its
  extractors), not a dependency between peers. The layer rule still checks those edges.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: The packages, bottom to top. Each may import itself and those before it.
LAYERS = ("base", "stores", "extract", "pipelines", "fusion")

MAX_LINES = 700


def _module_files() -> dict:
    """``{dotted module name: path}`` for every module of the layered packages."""
    modules = {}
    for package in LAYERS:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


MODULES = _module_files()


def _is_package(name: str) -> bool:
    return MODULES.get(name) is not None and MODULES[name].name == "__init__.py"


def _resolve(importer: str, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` names (relative levels resolved)."""
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    if not _is_package(importer):
        base = base[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _targets(importer: str, tree: ast.AST):
    """The modules of the layered packages that ``importer`` imports, each with its line."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            module = _resolve(importer, node)
            for alias in node.names:
                child = f"{module}.{alias.name}"
                yield (child if child in MODULES else module), node.lineno


def _edges() -> list:
    """``(importer, imported, line)`` for every import of one layered module by another."""
    edges = []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for target, line in _targets(name, tree):
            if target.split(".")[0] not in LAYERS:
                continue
            # ``import a.b.c`` of a name that is no module file: the nearest module above
            while target not in MODULES and "." in target:
                target = target.rsplit(".", 1)[0]
            edges.append((name, target, line))
    return sorted(set(edges))


EDGES = _edges()


def _layer(module: str) -> int:
    return LAYERS.index(module.split(".")[0])


def _registers(importer: str, imported: str) -> bool:
    """A package's ``__init__`` importing one of its own submodules."""
    return _is_package(importer) and imported.startswith(importer + ".")


def _cycles(edges) -> list:
    """The strongly connected components of more than one module, or with a self-import
    (Tarjan's algorithm, iterative), each as a sorted list of module names."""
    graph = {}
    for src, dst, _ in edges:
        graph.setdefault(src, set()).add(dst)
        graph.setdefault(dst, set())
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
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
                if len(component) > 1 or node in graph[node]:
                    found.append(sorted(component))
    return sorted(found)


def test_the_graph_is_read():
    """A guard against a reader that finds nothing: known edges, top-level and lazy, are there."""
    pairs = {(src, dst) for src, dst, _ in EDGES}
    assert ("fusion.train", "fusion.metrics") in pairs  # ``from fusion import ... metrics``
    assert ("fusion.train", "fusion.report") in pairs  # inside a function
    assert ("extract", "extract.registry") in pairs  # a package registering its members
    assert {"stores", "extract", "pipelines", "fusion"} <= {name.split(".")[0] for name in MODULES}


def test_imports_run_downward_only():
    upward = [f"{src} -> {dst} (line {line}): {LAYERS[_layer(src)]} may not import "
              f"{LAYERS[_layer(dst)]}"
              for src, dst, line in EDGES if _layer(dst) > _layer(src)]
    assert not upward, (f"{len(upward)} imports run upward (order {' < '.join(LAYERS)}):\n"
                        + "\n".join(upward))


def test_no_import_cycles():
    cycles = _cycles([edge for edge in EDGES if not _registers(edge[0], edge[1])])
    lines = []
    for members in cycles:
        inside = sorted(f"  {src} -> {dst} (line {line})" for src, dst, line in EDGES
                        if src in members and dst in members and not _registers(src, dst))
        lines.append(" <-> ".join(members) + "\n" + "\n".join(inside))
    assert not cycles, f"{len(cycles)} import cycles:\n" + "\n".join(lines)


def test_cycle_finder_finds_cycles():
    """The cycle check itself: a circle of three and a self-import are found, a chain is not."""
    assert _cycles([("a", "b", 1), ("b", "c", 1), ("c", "a", 1), ("c", "d", 1)]) == [["a", "b", "c"]]
    assert _cycles([("a", "a", 1)]) == [["a"]]
    assert _cycles([("a", "b", 1), ("b", "c", 1)]) == []


def _line_cases():
    for path in sorted(MODULES.values()):
        yield pytest.param(path, id=path.relative_to(ROOT).as_posix())


@pytest.mark.parametrize("path", list(_line_cases()))
def test_module_fits_on_a_few_screens(path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines (at most {MAX_LINES})"
