"""Mutant: a tiered storage write switches the reference to its new copy however long ago it
wrote it, so a copy the garbage collector already took for an orphan (the clock passed its
grace meanwhile) becomes the key's value: a reference to a copy that is gone.

Loaded with ``-p tests.mutants.tiered_put_ignores_copy_freshness``.
"""

from __future__ import annotations

from prism_testkit.patterns.tiered_storage import TieredStorage


def _always_fresh(self: TieredStorage, token: str) -> bool:
    return True  # the bug: the copy's age is not looked at


TieredStorage.still_fresh = _always_fresh  # type: ignore[method-assign]
