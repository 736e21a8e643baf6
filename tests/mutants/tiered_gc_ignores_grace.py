"""Mutant: the garbage collector ignores ``gc_grace`` and removes unreferenced copies however
young, including the copy of a put whose compare-and-set is still in flight.

Loaded with ``-p tests.mutants.tiered_gc_ignores_grace``.
"""

from __future__ import annotations

from prism_testkit.patterns.tiered_storage import GarbageCollector

_real = GarbageCollector.orphans


async def _orphans(self: GarbageCollector, *, grace: float | None = None) -> list[tuple[str, str]]:
    return await _real(self, grace=0.0)  # the bug: no grace period


GarbageCollector.orphans = _orphans  # type: ignore[method-assign]
