"""The core imports one way counted by package, not only by module (issue 42): a package whose
module imports another package's module depends on that package, and no chain of such
dependencies may lead back. Top-level modules (``options``, ``driver``, ``plugin``...) count as
packages of their own. Every import statement counts: lazy ones inside functions and those
under ``TYPE_CHECKING`` too, since a cycle of types is still a cycle of concerns.

The graph is built from the source with :mod:`ast`, nothing is imported. On a cycle the test
prints it, each step with the module imports that make it.
"""

from __future__ import annotations

import ast
import itertools
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from tests._parsing import parse

from .test_import_graph import LAYERS, cycle

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "prism_testkit"
PACKAGE = "prism_testkit"


def core_modules() -> dict[str, Path]:
    """Every module of the core by dotted name (a package by its ``__init__``); the layers above
    it (backends, patterns, suites) share its folder but are not the core."""
    found = {}
    for path in sorted(CORE.rglob("*.py")):
        parts = path.relative_to(CORE).with_suffix("").parts
        if parts[0] in LAYERS:
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join((PACKAGE, *parts))] = path
    return found


def unit(module: str) -> str:
    """The package a module counts for: ``prism_testkit.faults.proxy`` -> ``faults``;
    a top-level module is its own (``options``); the package's own ``__init__`` is ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports(name: str, path: Path, known: set[str]) -> Iterator[str]:
    """The core modules ``path`` (module ``name``) imports, relative imports resolved. For
    ``from a import b`` that is ``a.b`` where ``b`` is a module, else ``a`` (a name defined there)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def known_prefix(dotted: str) -> str | None:
        while dotted and dotted not in known:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    for node in ast.walk(parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [known_prefix(alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            named = [f"{base}.{alias.name}" for alias in node.names]
            targets = [module if module in known else known_prefix(base) for module in named]
        else:
            continue
        yield from (t for t in targets if t is not None)


def package_graph() -> tuple[dict[str, set[str]], dict[tuple[str, str], list[str]]]:
    """Package -> the packages it imports, and for each such edge the module imports behind it."""
    modules = core_modules()
    known = set(modules)
    edges: dict[str, set[str]] = defaultdict(set)
    why: dict[tuple[str, str], list[str]] = defaultdict(list)
    for name, path in modules.items():
        edges[unit(name)]  # a package that imports nothing is still a node
        for target in imports(name, path, known):
            a, b = unit(name), unit(target)
            if a != b:
                edges[a].add(b)
                why[(a, b)].append(f"{name} -> {target}")
    return dict(edges), dict(why)


def describe(found: list[str], why: dict[tuple[str, str], list[str]]) -> str:
    steps = [f"{a} -> {b}  ({'; '.join(sorted(set(why[(a, b)])))})" for a, b in itertools.pairwise(found)]
    return "the core's packages import each other in a circle:\n  " + "\n  ".join(steps)


def test_the_package_graph_has_no_cycle() -> None:
    edges, why = package_graph()
    found = cycle(edges)
    assert found is None, describe(found or [], why)


def test_the_graph_sees_the_core() -> None:
    edges, why = package_graph()
    # the packages of the core and its top-level modules are all nodes
    assert {"provision", "faults", "stateful", "registry", "config", "hunting", "options", "runtime"} <= edges.keys()
    # edges the layering relies on are seen, lazy and type-only imports included
    assert "faults" in edges["stateful"]  # the machine drives the nemesis, which drives faults
    assert "provision" in edges["faults"]
    assert "runtime" in edges["stateful"]  # the runner's env, named for its type only
    assert any("prism_testkit.provision.base" in line for line in why[("registry", "provision")])


def test_a_name_imported_from_the_package_itself_counts() -> None:
    # ``from prism_testkit import Driver`` depends on prism_testkit/__init__, which imports the
    # plugin's layers: were a core module to do it, that would be a cycle through __init__
    edges, _ = package_graph()
    inward = sorted(p for p, targets in edges.items() if "__init__" in targets)
    assert inward == [], f"{inward} import a name from prism_testkit/__init__ (import it from its own module)"


def test_the_cycle_is_printed_with_its_imports() -> None:
    why = {("a", "b"): ["prism_testkit.a.x -> prism_testkit.b.y"], ("b", "a"): ["prism_testkit.b.z -> prism_testkit.a"]}
    found = cycle({"a": {"b"}, "b": {"a"}})
    assert found == ["a", "b", "a"]
    text = describe(found, why)
    assert "a -> b  (prism_testkit.a.x -> prism_testkit.b.y)" in text
    assert "b -> a  (prism_testkit.b.z -> prism_testkit.a)" in text
