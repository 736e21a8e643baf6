"""Mutant: tiered storage's ``delete`` reports True for a key whose value had already expired
(readers saw it as absent), so callers count deletions of values that no longer existed.

Loaded with ``-p tests.mutants.tiered_delete_reports_expired``.
"""

from __future__ import annotations

from prism_testkit.patterns.tiered_storage import TieredStorage


async def _delete(self: TieredStorage, key: str) -> bool:
    _, reference = await self.load(key)
    if reference is None:
        return False
    await self.reference.delete(self.reference_key(key))
    await self._remove_old(key, reference)
    return True  # the bug: an expired value is reported as deleted


TieredStorage.delete = _delete  # type: ignore[method-assign]
