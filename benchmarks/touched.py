"""Which test files a change touches: what the census runs for a landing (``census --changed-since REV``).

A census of every suite file holds the machine for hours; a landing needs the files its change
can redden. Those are:

- a test file the change edits (``prism_testkit/suites/test_*.py``, ``tests/test_*.py``);
- a test file whose own imports name a module the change edits: the module itself, a module
  under it (a changed package ``__init__``), or a package holding it below the project's first
  level (``prism_testkit.patterns.outbox`` for ``patterns/outbox/relay.py``: its ``__init__``
  re-exports the relay; ``prism_testkit`` itself would name everything);
- the same through the test side's private helpers (``suites/_queue_machine.py``,
  ``tests/_suite_runs.py``): a helper that imports a changed module is changed for this purpose.

Only the test side's imports are followed, not the library's own: following ``prism_testkit``'s
imports from a suite reaches nearly every module (the plugin imports the registry, which imports
every backend), and a census of everything is what this exists to avoid. A change deep in the
library that no test file names is the test command's and CI's load pass's to judge. The
registered mutants (``tests/mutants/``) are proofs, not census files: a changed mutant is named
so its proof can be run (``tests/test_mutants.py -k NAME``).
"""

from __future__ import annotations

import ast
import subprocess
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST_SIDE = ("prism_testkit/suites", "tests")  # folders whose files are tests or their helpers


def module_of(path: str) -> str | None:
    """The dotted module a project file is (``prism_testkit/patterns/outbox/__init__.py`` ->
    ``prism_testkit.patterns.outbox``), None for a file that is not a Python module."""
    if not path.endswith(".py"):
        return None
    parts = list(Path(path).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts) if parts else None


def imported_names(source: str, module: str, modules: Collection[str]) -> set[str]:
    """Every dotted name a module's imports name: ``import a.b`` gives ``a.b``; ``from a import b``
    gives ``a.b`` where that is one of the project's ``modules``, else ``a`` (``b`` is a name in
    it); relative imports resolved from ``module``."""
    names: set[str] = set()
    package = module.rsplit(".", 1)[0] if "." in module else ""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                full = f"{base}.{alias.name}"
                names.add(full if full in modules else base)
    return names


def names_module(imported: str, changed: str) -> bool:
    """Whether an import of ``imported`` reaches the changed module ``changed`` (see the module's
    docstring: itself, under it, or a package holding it below the first level)."""
    if imported == changed or imported.startswith(changed + "."):
        return True
    return changed.startswith(imported + ".") and imported.count(".") >= 2


def is_test_file(path: str) -> bool:
    return Path(path).name.startswith("test_") and path.endswith(".py")


def touched(changed: Iterable[str], sources: Mapping[str, str], modules: Collection[str]) -> dict[str, str]:
    """The test files of ``sources`` (test-side path -> its source) that the changed paths touch,
    each with why: ``edited``, or the changed module it imports (through which helper).
    ``modules``: every dotted module of the project (:func:`project_modules`)."""
    changed = list(changed)
    reasons: dict[str, str] = {path: "edited" for path in changed if path in sources and is_test_file(path)}
    reached = {module: "" for path in changed if (module := module_of(path))}  # module -> through which helper
    imports = {path: imported_names(source, module_of(path) or "", modules) for path, source in sources.items()}
    growing = True
    while growing:  # a helper that imports a reached module is reached too, until nothing is added
        growing = False
        for path, names in sorted(imports.items()):
            module = module_of(path) or path
            hit = next(((n, m) for m in sorted(reached) for n in sorted(names) if names_module(n, m)), None)
            if hit is None:
                continue
            name, reached_module = hit
            why = reached[reached_module] or (name if name == reached_module else f"{name} (holding {reached_module})")
            if is_test_file(path):
                reasons.setdefault(path, f"imports {why}")
            elif module not in reached:
                reached[module] = f"{why} through {module}" if not reached[reached_module] else why
                growing = True
    return dict(sorted(reasons.items()))


def changed_since(revision: str, root: Path = ROOT) -> list[str]:
    """The project's paths changed since ``revision``: committed, staged, unstaged and new
    (untracked, not ignored). A revision git does not know raises ``ValueError``."""

    def git(*args: str) -> list[str]:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
        if done.returncode != 0:
            raise ValueError(f"git {' '.join(args)}: {done.stderr.strip() or 'failed'}")
        return [line for line in done.stdout.splitlines() if line]

    return sorted({*git("diff", "--name-only", revision, "--"), *git("ls-files", "--others", "--exclude-standard")})


def sources_of_the_test_side(root: Path = ROOT) -> dict[str, str]:
    """Every Python file of the test side, by its path relative to ``root``."""
    return {
        str(path.relative_to(root)): path.read_text()
        for folder in TEST_SIDE
        for path in sorted((root / folder).glob("*.py"))
    }


def project_modules(root: Path = ROOT) -> set[str]:
    """Every dotted module of the project: the library, its tests and the benchmarks."""
    return {
        module
        for folder in ("prism_testkit", "tests", "benchmarks")
        for path in (root / folder).rglob("*.py")
        if (module := module_of(str(path.relative_to(root))))
    }


def changed_mutants(changed: Iterable[str]) -> list[str]:
    """The registered mutants a change edits, by name (their proofs: ``tests/test_mutants.py -k``)."""
    return sorted(Path(path).stem for path in changed if path.startswith("tests/mutants/") and path.endswith(".py"))
