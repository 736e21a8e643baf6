"""The core's layout stays acyclic: no module imports, even lazily or for types only, a module
that imports it back, and the top level stays small (issue 24's regrouping)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from prism_testkit._moved import MOVED
from tests._parsing import parse

ROOT = Path(__file__).resolve().parent.parent
# The layers above the core live in the same package: backends and patterns are part of the import
# graph, the suites (which use everything, and which nothing imports) are not.
LAYERS = ("backends", "patterns", "suites")


def modules() -> dict[str, Path]:
    found = {}
    for path in (ROOT / "prism_testkit").rglob("*.py"):
        parts = ("prism_testkit", *path.relative_to(ROOT / "prism_testkit").with_suffix("").parts)
        if parts[1:2] != ("suites",):
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def raw_imports(name: str, path: Path) -> Iterator[str]:
    """Every dotted name an import statement of ``path`` (the module ``name``) asks for, relative
    ones resolved: for ``from a import b`` both ``a.b`` and ``a``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            yield from [f"{base}.{alias.name}" for alias in node.names] + [base]


def imported(name: str, path: Path, known: set[str]) -> Iterator[str]:
    for target in raw_imports(name, path):
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name and not name.startswith(target + "."):
            yield target


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: set(imported(name, path, known)) for name, path in found.items()}


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_import_graph_has_no_cycle() -> None:
    edges = graph()
    assert len(edges) > 80  # the walk found the code base
    assert cycle(edges) is None, " -> ".join(cycle(edges) or [])


def test_moved_modules_leave_no_file_behind() -> None:
    found = modules()
    assert not MOVED.keys() & found.keys()  # an old path is only an alias (prism_testkit._moved)
    assert set(MOVED.values()) <= found.keys()  # and names a module that exists


def test_nothing_in_the_repository_imports_an_old_path() -> None:
    # An old path warns when imported: the repository's own code, tests, suites, benchmarks,
    # examples and README snippets use the new one (tests/test_moved.py imports old ones by name).
    wrong = []
    names = {path: name for name, path in modules().items()}
    for path in sorted(ROOT.rglob("*.py")):
        relative = path.relative_to(ROOT)
        if relative.parts[0].startswith(".") or "egg-info" in relative.parts[0]:
            continue
        name = names.get(path, ".".join(relative.with_suffix("").parts))
        wrong += [f"{relative}: {target}" for target in raw_imports(name, path) if target in MOVED]
    documents = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), *sorted((ROOT / "examples").rglob("*.md"))]
    for path in documents:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            words = line.replace(",", " ").split()
            if words[:1] in (["import"], ["from"]) and len(words) > 1:
                targets = [words[1]] + ([f"{words[1]}.{w}" for w in words[3:]] if words[0] == "from" else [])
                wrong += [f"{path.relative_to(ROOT)}:{number}: {t}" for t in targets if t in MOVED]
    assert not wrong, wrong


def test_the_cycle_finder_finds_one() -> None:
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None


PACKAGES_OF_THE_CORE = sorted(
    p.parent.name for p in (ROOT / "prism_testkit").glob("*/__init__.py") if p.parent.name not in LAYERS
)


@pytest.mark.parametrize("package", ["provision", "faults", "report", "registry", "runtime", "hunting"])
def test_each_concern_has_its_package(package: str) -> None:
    assert package in PACKAGES_OF_THE_CORE


def test_the_core_top_level_stays_small() -> None:
    # the plugin's own hooks and options, the suite API (suite, driver), interfaces,
    # capabilities, errors, isolation, redaction, the CLI, the package and its old-path aliases,
    # patience (the bounds every layer waits by, backends' drivers included: a leaf module) and
    # findings (the known violations a suite judges a loss against, as it calls patience)
    top = {p.stem for p in (ROOT / "prism_testkit").glob("*.py")}
    top.discard("__main__")  # `python -m prism_testkit`: Python's entry point, not a concern of the core
    assert len(top) <= 14, sorted(top)


@pytest.mark.parametrize("package", PACKAGES_OF_THE_CORE)
def test_each_package_says_what_lives_there_and_what_it_may_import(package: str) -> None:
    folder = ROOT / "prism_testkit" / package
    doc = ast.get_docstring(parse((folder / "__init__.py").read_text())) or ""
    assert "May import:" in doc
    undocumented = [p.stem for p in sorted(folder.glob("*.py")) if p.stem != "__init__" and f".{p.stem}`" not in doc]
    assert not undocumented, f"prism_testkit/{package}/__init__.py does not say what {undocumented} hold"


# What each package of the core may not import (its __init__ docstring says what it may).
FORBIDDEN = {
    "prism_testkit.report": (
        *("provision", "faults", "registry", "runtime", "hunting", "stateful", "config", "options"),
        *("plugin", "cli", "backends", "patterns"),
    ),
    "prism_testkit.provision": (
        *("registry", "report", "runtime", "hunting", "stateful", "faults", "config", "options"),
        *("plugin", "cli", "backends", "patterns"),
    ),
    "prism_testkit.registry": (
        *("report", "runtime", "hunting", "stateful", "faults", "config", "options"),
        *("plugin", "cli", "backends", "patterns"),
    ),
    "prism_testkit.faults": (
        *("report", "runtime", "hunting", "stateful", "config", "options"),
        *("plugin", "cli", "backends", "patterns"),
    ),
    "prism_testkit.stateful": (
        *("registry", "report", "runtime", "config", "options", "provision.servers", "provision.processes"),
        *("plugin", "cli", "backends", "patterns"),
    ),
    "prism_testkit.config": (
        *("provision", "faults", "stateful", "hunting", "runtime", "report", "options"),
        *("plugin", "cli", "backends", "patterns"),
    ),
    "prism_testkit.hunting": (
        *("registry", "runtime", "faults", "stateful", "report", "config.namespace_files", "config.runs"),
        *("plugin", "cli", "backends", "patterns"),
    ),
    "prism_testkit.runtime": (
        *("report", "hunting", "stateful", "config", "options"),
        *("plugin", "cli", "backends", "patterns"),
    ),
    # every pattern imports it: it may import only what a pattern may (errors, interfaces, the clock)
    "prism_testkit.pattern_sdk": (
        *("provision", "faults", "registry", "report", "runtime", "hunting", "stateful", "config", "options"),
        *("plugin", "cli", "driver", "backends", "patterns", "suites"),
    ),
    # patterns and backends import its clock: it imports nothing of the project
    "prism_testkit.simulation": (
        *("provision", "faults", "registry", "report", "runtime", "hunting", "stateful", "config"),
        *("plugin", "cli", "driver", "errors", "backends", "patterns"),
    ),
}


# The modules of a forbidden package a package may still name, and why.
EXCEPTIONS = {
    # the nemesis and the stateful runner act on the per-test env, named for its type only
    "prism_testkit.stateful": {"prism_testkit.runtime.env"},
    # a replay compares the load its schedule recorded with the one asked for, by the load's own
    # parser (a leaf: it imports only errors)
    "prism_testkit.hunting": {"prism_testkit.faults.load"},
    # a shard named by a merge's environment is refused with a K/N field given twice by the
    # shards' own check (a leaf: it imports only errors)
    "prism_testkit.report": {"prism_testkit.registry.shards"},
}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_each_package_imports_only_what_its_docstring_allows(package: str) -> None:
    found = modules()
    allowed = EXCEPTIONS.get(package, set())
    edges = graph()
    wrong = [
        f"{name} -> {target}"
        for name in edges
        if name.startswith(package + ".") or name == package
        for target in edges[name]
        if target not in allowed
        and any(target == f"prism_testkit.{f}" or target.startswith(f"prism_testkit.{f}.") for f in FORBIDDEN[package])
    ]
    assert found
    assert not wrong, wrong
