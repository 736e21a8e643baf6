"""Old import paths of modules that moved to a package of their concern: each stays for one
release as an alias of the module itself (so a monkeypatch through either path hits both)."""

from __future__ import annotations

import importlib
import sys
import warnings


def moved(old: str, new: str) -> None:
    warnings.warn(f"{old} moved to {new}; the old path goes in the next release", DeprecationWarning, stacklevel=3)
    sys.modules[old] = importlib.import_module(new)
