"""Mutant: the invalidating cache treats a truncate like any change event, deleting only the
cached copy of its empty key, so a row deleted while the connector's capture was lost stays
readable from the cache after the re-snapshot.

Loaded with ``-p tests.mutants.cdc_cache_ignores_truncate``; the CDC suite must report a
deleted key still read from the cache.
"""

from __future__ import annotations

from prism_testkit.interfaces import Message
from prism_testkit.patterns.cdc import InvalidatedCache
from prism_testkit.patterns.cdc.events import ChangeEvent, decode


async def _key_only(self: InvalidatedCache, event: ChangeEvent | Message) -> None:
    if isinstance(event, Message):
        event = decode(event)
    await self.cache.delete(self.cache_key(event.key))  # the bug: a truncate names no key
    self.metrics.invalidations += 1


InvalidatedCache.invalidate = _key_only  # type: ignore[method-assign]
