"""Mutant: the invalidating cache only drops cached copies on events that carry a new value,
skipping deletes, so a deleted row stays readable from the cache.

Loaded with ``-p tests.mutants.cdc_cache_skips_delete_invalidation``; the CDC suite must report
a deleted key still read from the cache.
"""

from __future__ import annotations

from prism_testkit.interfaces import Message
from prism_testkit.patterns.cdc import InvalidatedCache
from prism_testkit.patterns.cdc.events import ChangeEvent, decode

_invalidate = InvalidatedCache.invalidate


async def _skip_deletes(self: InvalidatedCache, event: ChangeEvent | Message) -> None:
    if isinstance(event, Message):
        event = decode(event)
    if event.after is None:
        return  # the bug: deletes do not invalidate
    await _invalidate(self, event)


InvalidatedCache.invalidate = _skip_deletes  # type: ignore[method-assign]
