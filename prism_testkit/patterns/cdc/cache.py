"""Cached reads with invalidation by the change stream (RFC-014 pattern 6): a look-aside cache
on any key-value backend with compare-and-set, in front of a source whose CDC events delete
the cached copies of changed keys.

The classic race of a look-aside cache is a reader that misses, reads the old value from the
store, and fills the cache *after* the invalidation of a newer write went by: the old value
then stays cached. Fills here follow memcache's leases: a miss first claims the cache key
with a unique lease (compare-and-set from absent), then reads the store, then swaps the lease
for the value (compare-and-set from the lease). An invalidation deletes whatever the key holds,
lease included, so a fill that raced with it fails and nothing stale is cached. A lease
claimed after the invalidation reads the store after the write committed (the write commits
before its change event exists), so it fills the new value.

After a write, a read returns the old value at most until its invalidation is applied; the
time from commit to invalidation is measured (``prism_cdc_cache_invalidation_lag_seconds``).

A truncate (the connector lost its capture and re-snapshots, ``on_capture_lost="resnapshot"``)
drops every cached copy under ``cache_prefix``: the snapshot that follows republishes the rows
that exist, but a row deleted in the gap has no event left to invalidate it. With an empty
``cache_prefix`` that is every key the cache client sees: give the cache a prefix of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import prism_testkit.simulation.clock as clocks
from prism_testkit.interfaces import KeyValue, Message
from prism_testkit.pattern_sdk import metrics as prometheus

from .events import ChangeEvent, decode

DATA, LEASE = b"d", b"l"  # first byte of a cache entry: a cached value, or a fill in progress


@dataclass
class CacheMetrics:
    hits: int = 0
    misses: int = 0
    fills: int = 0
    fills_lost: int = 0  # fills whose lease an invalidation took away (the race, defused)
    invalidations: int = 0
    flushes: int = 0  # truncates applied: every cached copy dropped
    invalidation_lag_seconds: float = 0.0  # last commit-to-invalidation delay
    max_invalidation_lag_seconds: float = 0.0

    def samples(self) -> dict[str, float]:
        """The metrics under their exported names (``prism_cdc_cache_hits_total`` ...)."""
        return prometheus.samples("cdc_cache", self)


@dataclass
class InvalidatedCache:
    """Reads through ``cache`` (a key-value with compare-and-set) to ``store``; feed every
    change event of the store's capture to :meth:`invalidate`."""

    store: KeyValue
    cache: KeyValue
    cache_prefix: str = ""
    clock: Callable[[], float] = clocks.wall
    metrics: CacheMetrics = field(default_factory=lambda: prometheus.tracked("cdc_cache", CacheMetrics()))

    def cache_key(self, key: str) -> str:
        return self.cache_prefix + key

    async def get(self, key: str) -> bytes | None:
        cached = await self.cache.get(self.cache_key(key))
        if cached is not None and cached[:1] == DATA:
            self.metrics.hits += 1
            return cached[1:]
        self.metrics.misses += 1
        lease = LEASE + clocks.fresh_uuid().hex.encode()
        leased = cached is None and await self.cache.compare_and_set(self.cache_key(key), None, lease)
        value = await self.store.get(key)
        if leased:
            if value is None:  # absence is not cached: drop our lease, unless already invalidated
                if await self.cache.compare_and_set(self.cache_key(key), lease, b""):
                    await self.cache.delete(self.cache_key(key))
            elif await self.cache.compare_and_set(self.cache_key(key), lease, DATA + value):
                self.metrics.fills += 1
            else:
                self.metrics.fills_lost += 1
        return value

    async def invalidate(self, event: ChangeEvent | Message) -> None:
        if isinstance(event, Message):
            event = decode(event)
        if event.op == "t":
            await self._flush()
        else:
            await self.cache.delete(self.cache_key(event.key))
        lag = max(0.0, self.clock() - event.commit_ts_ms / 1000)
        self.metrics.invalidations += 1
        self.metrics.invalidation_lag_seconds = lag
        self.metrics.max_invalidation_lag_seconds = max(self.metrics.max_invalidation_lag_seconds, lag)

    async def _flush(self) -> None:
        """Drop every entry under ``cache_prefix``, leases too: a fill that raced with it then
        fails, as with any invalidation."""
        keys = [key async for key in self.cache.scan(self.cache_prefix)]
        for key in keys:
            await self.cache.delete(key)
        self.metrics.flushes += 1
