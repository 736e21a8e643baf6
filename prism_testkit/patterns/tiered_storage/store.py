"""The tiered storage client: ``get`` / ``put`` / ``delete`` / ``exists`` over up to three
tiers and a reference store; the caller never learns which tier answered.

Write: new copy in the write tier -> compare-and-set the reference -> remove the old copy.
A crash between the steps leaves an unreferenced copy (an orphan) that the garbage collector
removes; the reference always names a copy that exists, so every key stays readable.

Read: reference -> copy. When the copy is gone, the reference is read again: a migration or
a put replaced it meanwhile (retry), or the value is lost (:class:`CopyMissing`, never a
silent ``None``). When rules or capacity need it, reads count accesses with one
compare-and-set; losing that race only skips the count (statistics for the rules, not data).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import prism_testkit.simulation.clock as clocks
from prism_testkit.errors import ConfigurationError, PayloadTooLarge
from prism_testkit.interfaces import KeyValue
from prism_testkit.pattern_sdk import metrics as prometheus

from .config import TieredStorageConfig
from .errors import CopyMissing, VersionConflict
from .references import Reference, new_copy_token, token_time
from .tiers import Tier, copy_name

Clock = Callable[[], float]


@dataclass
class TieredStorageMetrics:
    """RFC-009's counters: ``prism_tiered_storage_tier_size{tier}`` (bytes per tier, refreshed
    by every migrator pass), promotions, demotions, expirations, failed migrations and orphans
    the garbage collector removed."""

    # the label of each dict field (prism_testkit.pattern_sdk.metrics)
    LABELS: ClassVar[dict[str, str]] = {"tier_size": "tier"}

    tier_size: dict[str, int] = field(default_factory=dict)
    promotion_count: int = 0
    demotion_count: int = 0
    expiration_count: int = 0
    migration_failures: int = 0
    orphans_removed: int = 0
    old_copy_delete_failures: int = 0

    def prometheus(self, namespace: str) -> str:
        """Prometheus' text format, labelled with ``namespace``: what the collector exports."""
        return prometheus.exposition("tiered_storage", namespace, self)


class TieredStorage:
    """The client API: ``get``, ``put``, ``delete`` and ``exists`` over the tiers, each key found
    through the reference store.

    Usage::

        store = TieredStorage(
            {"hot": KeyValueTier(redis_kv), "cold": ObjectTier(s3, "archive", stream_threshold=8 << 20,
                                                            chunk_size=1 << 20)},
            reference=postgres_kv,
            config=TieredStorageConfig(),
        )
        await store.prepare()
        await store.put("user:1", b"...")
        value = await store.get("user:1")
        await Migrator(store).run_once()   # applies rules, tier ttl and capacity
    """

    def __init__(
        self,
        tiers: Mapping[str, Tier],
        reference: KeyValue,
        config: TieredStorageConfig | None = None,
        *,
        clock: Clock = clocks.wall,
    ) -> None:
        self.config = config or TieredStorageConfig()
        if set(tiers) != set(self.config.tiers):
            raise ConfigurationError(
                f"tiered storage got tiers {', '.join(sorted(tiers)) or 'none'} but its config names "
                f"{', '.join(self.config.tiers)}: give one backend per configured tier"
            )
        self.tiers = dict(tiers)
        self.reference = reference
        self.clock = clock
        self.metrics = prometheus.tracked("tiered_storage", TieredStorageMetrics())

    # -- naming -----------------------------------------------------------------------------

    def reference_key(self, key: str) -> str:
        return self.config.reference_prefix + key

    def tier_prefix(self, tier: str) -> str:
        """Where ``tier``'s copies are named: per tier, so two tiers on one backend never
        mistake each other's copies for orphans."""
        return f"{self.config.data_prefix}{tier}/"

    def copy_name(self, tier: str, key: str, token: str) -> str:
        return copy_name(self.tier_prefix(tier), key, token)

    def tier(self, name: str) -> Tier:
        return self.tiers[name]

    async def prepare(self) -> None:
        """Create what the tiers need (the object tier's bucket)."""
        for tier in self.tiers.values():
            await tier.prepare()

    # -- references -------------------------------------------------------------------------

    async def load(self, key: str) -> tuple[bytes | None, Reference | None]:
        """The reference record's raw bytes (for compare-and-set) and its decoded form."""
        raw = await self.reference.get(self.reference_key(key))
        if raw is None:
            return None, None
        raw = bytes(raw)
        return raw, Reference.decode(key, raw)

    async def switch(self, key: str, expected: bytes | None, new: Reference) -> bool:
        return await self.reference.compare_and_set(self.reference_key(key), expected, new.encode())

    def still_fresh(self, token: str) -> bool:
        """Whether a copy made for a write may still be switched to. The collector removes
        unreferenced copies older than ``gc_grace``; a write that took half of that gives up
        (and retries with a new copy) rather than point the reference at a copy that may be gone."""
        created = token_time(token)
        return created is not None and self.clock() - created < self.config.gc_grace / 2

    def expired(self, reference: Reference, now: float) -> bool:
        """Past the ttl of the slowest tier it may live in: gone for readers."""
        if reference.expired_marker:
            return True
        if self.config.next_slower(reference.tier) is not None:
            return False  # the migrator demotes it; it stays readable meanwhile
        ttl = self.config.tiers[reference.tier].ttl
        return ttl is not None and math.isfinite(ttl) and now - reference.moved_at > ttl

    # -- client API -------------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        for _ in range(self.config.max_attempts):
            raw, reference = await self.load(key)
            if reference is None:
                return None
            now = self.clock()
            if self.expired(reference, now):
                return None
            value = await self.tier(reference.tier).read(self.copy_name(reference.tier, key, reference.copy))
            if value is None:
                again, _ = await self.load(key)
                if again == raw:
                    raise CopyMissing(key, reference.tier, reference.copy)
                continue  # moved or replaced while we read: follow the new reference
            if self.config.counts_accesses:
                with contextlib.suppress(Exception):  # counting is best effort; the value is what matters
                    await self.switch(key, raw, reference.accessed(now))
            return value
        raise VersionConflict(key, self.config.max_attempts)

    async def exists(self, key: str) -> bool:
        _, reference = await self.load(key)
        return reference is not None and not self.expired(reference, self.clock())

    async def put(self, key: str, value: bytes) -> None:
        limit = self.config.max_value_size
        if limit is not None and len(value) > limit:
            raise PayloadTooLarge(len(value), limit, "value")
        tier_name = self.config.write_tier
        tier = self.tier(tier_name)
        for _ in range(self.config.max_attempts):
            raw, old = await self.load(key)
            now = self.clock()
            token = new_copy_token(now)
            await tier.write(self.copy_name(tier_name, key, token), value)
            new = Reference(tier_name, (old.version + 1) if old else 1, token, len(value), now, now, now, 0)
            if self.still_fresh(token) and await self.switch(key, raw, new):
                if old is not None:
                    await self._remove_old(key, old)
                return
            await tier.remove(self.copy_name(tier_name, key, token))  # lost the race: this copy is nobody's
        raise VersionConflict(key, self.config.max_attempts)

    async def delete(self, key: str) -> bool:
        """Remove the key; True when it existed. A put racing the delete either lands before
        (and is deleted) or after (and stays); its copy is never left referenced and missing."""
        _, reference = await self.load(key)
        if reference is None:
            return False
        await self.reference.delete(self.reference_key(key))
        await self._remove_old(key, reference)
        return not self.expired(reference, self.clock())

    async def _remove_old(self, key: str, old: Reference) -> None:
        try:
            await self.tier(old.tier).remove(self.copy_name(old.tier, key, old.copy))
        except Exception:  # the garbage collector removes it later
            self.metrics.old_copy_delete_failures += 1
