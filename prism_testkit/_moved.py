"""Old import paths of modules that moved to a package of their concern, kept until :data:`REMOVED_IN`.

One finder on :data:`sys.meta_path` (installed by ``prism_testkit/__init__``) answers only the
dotted names in :data:`MOVED`: importing one imports the module's new home and binds the old
name to that very module object, so ``import``, ``from ... import`` and a monkeypatch through
either path all reach the same module. A moved package's old name (``prism_testkit.jepsen``) is
a stand-in that answers with the new package's attributes and imports its children by their old
names, each also in the table. A :class:`DeprecationWarning` naming the new path is
raised when, and only when, an old path is imported; nothing in this repository imports one
(``tests/test_import_graph.py`` checks).

May import: the standard library only. It runs in every pytest run of an environment where the
plugin is installed, so it costs a dictionary lookup per import and nothing else.
"""

from __future__ import annotations

import functools
import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType

# The release without the old paths (CHANGELOG.md dates the deprecation and names this release).
REMOVED_IN = "0.2.0"

# old dotted path -> where the module lives now
MOVED = {
    "prism_testkit.provisioning": "prism_testkit.provision.base",
    "prism_testkit.server_provisioning": "prism_testkit.provision.servers",
    "prism_testkit.processes": "prism_testkit.provision.processes",
    "prism_testkit.pattern_registry": "prism_testkit.registry.patterns",
    "prism_testkit.jepsen.lazymount": "prism_testkit.provision.lazymount",
    "prism_testkit.jepsen.lazyfs": "prism_testkit.faults.lazyfs",
    "prism_testkit.jepsen.faultproxy": "prism_testkit.faults.proxy",
    "prism_testkit.env": "prism_testkit.runtime.env",
    "prism_testkit.interrupts": "prism_testkit.runtime.interrupts",
    "prism_testkit.loop_shutdown": "prism_testkit.runtime.loop_shutdown",
    "prism_testkit.hunt": "prism_testkit.hunting.hunt",
    "prism_testkit.hypothesis_profiles": "prism_testkit.hunting.profiles",
    "prism_testkit.strategies": "prism_testkit.hunting.strategies",
    "prism_testkit.metrics": "prism_testkit.pattern_sdk.metrics",
    "prism_testkit.report.metrics": "prism_testkit.pattern_sdk.metrics",
    "prism_testkit.patterns.lifecycle": "prism_testkit.pattern_sdk.lifecycle",
    "prism_testkit.patterns.chain": "prism_testkit.pattern_sdk.chain",
    "prism_testkit.jepsen": "prism_testkit.stateful",
    "prism_testkit.jepsen.history": "prism_testkit.stateful.history",
    "prism_testkit.jepsen.client": "prism_testkit.stateful.client",
    "prism_testkit.jepsen.checkers": "prism_testkit.stateful.checkers",
    "prism_testkit.jepsen.replicas": "prism_testkit.stateful.checkers.replicas",
    "prism_testkit.jepsen.failover_loss": "prism_testkit.stateful.checkers.failover",
    "prism_testkit.jepsen.nemesis": "prism_testkit.stateful.nemesis",
    "prism_testkit.jepsen.machine": "prism_testkit.stateful.machine",
    "prism_testkit.jepsen.runner": "prism_testkit.stateful.runner",
    "prism_testkit.jepsen.timeline": "prism_testkit.stateful.timeline",
    "prism_testkit.jepsen.latency": "prism_testkit.stateful.latency",
    "prism_testkit.jepsen.recording": "prism_testkit.stateful.recording",
    "prism_testkit.stateful.replicas": "prism_testkit.stateful.checkers.replicas",
    "prism_testkit.stateful.failover_loss": "prism_testkit.stateful.checkers.failover",
}


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old path and loads it as the module at its new path."""

    prism_testkit_moved = True  # how install() recognises a finder a re-imported package put there

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        """The default: a placeholder module, replaced by the moved one in :meth:`exec_module`."""

    def exec_module(self, module: ModuleType) -> None:
        old = module.__name__
        new = MOVED[old]
        _warn_at_importer(f"{old} moved to {new}; the old path goes in prism-testkit {REMOVED_IN}")
        moved = importlib.import_module(new)
        if _has_moved_children(old):
            # A moved package stays a module of its own under the old name: ``from old import
            # child`` imports ``old.child``, named by this module's __name__, and only the old
            # name reaches this finder's entry for a child that moved elsewhere. Its attributes
            # are the new package's; its children are found by their old names here alone.
            module.__path__ = []
            module.__dict__["__getattr__"] = functools.partial(_package_attribute, old, moved)
            return
        # The import system hands out (and binds as the parent's attribute) whatever sys.modules
        # holds under the old name once this returns: the moved module itself, its own __name__
        # and __spec__ untouched, so both paths are one object.
        sys.modules[old] = moved


def _has_moved_children(old: str) -> bool:
    """Whether ``old`` was a package whose modules moved too (``prism_testkit.jepsen``); a module
    that became a package (``prism_testkit.jepsen.checkers``) is simply that package."""
    return any(name.startswith(old + ".") for name in MOVED)


def _warn_at_importer(message: str) -> None:
    """Warn naming the line that imported: the first frame outside the import machinery and this
    module (``from old_package import child`` reaches here through :func:`_package_attribute`
    and :func:`importlib.import_module`, which a stack level cannot skip)."""
    frame = sys._getframe(1)
    while frame.f_back is not None and (
        frame.f_code.co_filename.startswith("<frozen importlib")
        or frame.f_code.co_filename in (__file__, importlib.__file__)
    ):
        frame = frame.f_back
    globals_ = frame.f_globals
    warnings.warn_explicit(
        message,
        DeprecationWarning,
        frame.f_code.co_filename,
        frame.f_lineno,
        module=globals_.get("__name__", "<unknown>"),
        registry=globals_.setdefault("__warningregistry__", {}),
    )


def _package_attribute(old: str, moved: ModuleType, name: str) -> object:
    """An attribute of a moved package's old name: a child by its old path, else the new package's."""
    if f"{old}.{name}" in MOVED:
        return importlib.import_module(f"{old}.{name}")
    return getattr(moved, name)


def install() -> None:
    """Put the finder first on :data:`sys.meta_path`, once per interpreter (a re-imported
    ``prism_testkit``, as in pytester's in-process runs, finds it there)."""
    if not any(getattr(finder, "prism_testkit_moved", False) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Alias())
