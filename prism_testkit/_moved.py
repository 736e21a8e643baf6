"""Old import paths of modules that moved to a package of their concern, kept for one release.

One finder on :data:`sys.meta_path` (installed by ``prism_testkit/__init__``) answers only the
dotted names in :data:`MOVED`: importing one imports the module's new home and binds the old
name to that very module object, so ``import``, ``from ... import`` and a monkeypatch through
either path all reach the same module. A :class:`DeprecationWarning` naming the new path is
raised when, and only when, an old path is imported; nothing in this repository imports one
(``tests/test_import_graph.py`` checks).

May import: the standard library only. It runs in every pytest run of an environment where the
plugin is installed, so it costs a dictionary lookup per import and nothing else.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType

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
    "prism_testkit.metrics": "prism_testkit.report.metrics",
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
        # stacklevel 2 names the importing line: the warnings module skips importlib's frames
        warnings.warn(f"{old} moved to {new}; the old path goes in the next release", DeprecationWarning, 2)
        # The import system hands out (and binds as the parent's attribute) whatever sys.modules
        # holds under the old name once this returns: the moved module itself, its own __name__
        # and __spec__ untouched, so both paths are one object.
        sys.modules[old] = importlib.import_module(new)


def install() -> None:
    """Put the finder first on :data:`sys.meta_path`, once per interpreter (a re-imported
    ``prism_testkit``, as in pytester's in-process runs, finds it there)."""
    if not any(getattr(finder, "prism_testkit_moved", False) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Alias())
