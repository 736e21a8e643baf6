"""Mutant: a read whose reference names a copy its tier no longer holds returns ``None``
instead of raising ``CopyMissing``, so a lost value passes for a key that was never written.

Loaded with ``-p tests.mutants.tiered_reads_lost_copy_as_absent``.
"""

from __future__ import annotations

from prism_testkit.patterns.tiered_storage import CopyMissing, TieredStorage

_get = TieredStorage.get


async def _get_or_absent(self: TieredStorage, key: str) -> bytes | None:
    try:
        return await _get(self, key)
    except CopyMissing:
        return None  # the bug: the loss is silent, the key reads as absent


TieredStorage.get = _get_or_absent  # type: ignore[method-assign]
