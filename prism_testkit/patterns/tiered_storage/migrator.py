"""The background migrator and the garbage collector.

A migration is three steps, each safe to die after:

1. copy the current value to the target tier under a new copy name;
2. switch the reference to it with compare-and-set on the record read before step 1 (a put,
   delete or another migration in between makes it fail: the new copy is removed and the
   newer value stays, never overwritten by the older copy);
3. remove the old copy.

Dying after 1 leaves an orphan in the target tier, after 2 an orphan in the source tier; the
reference names a copy that exists at every point. :class:`GarbageCollector` removes copies
no reference names once they are older than ``gc_grace`` (younger ones may be writes whose
compare-and-set is still in flight).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from prism_testkit.pattern_sdk.lifecycle import DEFAULT_FORCE_TIMEOUT, DEFAULT_GRACEFUL_TIMEOUT, BatchProcess

from .errors import CorruptReference
from .references import Reference, new_copy_token, token_time
from .rules import TIERS
from .store import TieredStorage
from .tiers import split_copy_name

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Move:
    key: str
    source: str
    target: str | None  # None: the value expired and is removed
    why: str


class Migrator(BatchProcess):
    """Moves values between tiers as the rules, tier ttl and capacity ask.

    Drive it with :meth:`run_once` / :meth:`run_forever`, or as a lifecycle process:
    :meth:`start` (a pass every ``interval`` seconds), :meth:`health`, :meth:`stop`
    (``within=``). A stop lets the pass in hand finish its moves; forced (the bound ran out: a
    tier or the reference store hangs), the pass is cancelled and the report names the moves
    it left (``key K: SOURCE -> TARGET``). Each move is safe to cancel at any await (see the
    module docstring): the reference names a copy that exists, and the next pass plans the
    move again.
    """

    pattern_name = "tiered-migrator"

    def __init__(
        self,
        store: TieredStorage,
        *,
        interval: float = 1.0,
        graceful_timeout: float = DEFAULT_GRACEFUL_TIMEOUT,
        force_timeout: float = DEFAULT_FORCE_TIMEOUT,
        health_timeout: float = 5.0,
    ) -> None:
        super().__init__(
            graceful_timeout=graceful_timeout,
            force_timeout=force_timeout,
            health_timeout=health_timeout,
            idle_wait=interval,
        )
        self.store = store
        self._moves: list[Move] = []  # the moves of the pass in hand not yet done

    # -- planning ---------------------------------------------------------------------------

    async def references(self) -> AsyncIterator[tuple[str, Reference]]:
        prefix = self.store.config.reference_prefix
        keys = [name async for name in self.store.reference.scan(prefix)]
        for name in sorted(keys):
            key = name[len(prefix) :]
            try:
                _, reference = await self.store.load(key)
            except CorruptReference as exc:  # left alone and reported; never guessed at
                log.warning("%s", exc)
                continue
            if reference is not None and not reference.expired_marker:
                yield key, reference

    async def plan(self) -> list[Move]:
        """The moves rules, tier ttl and capacity ask for now; refreshes the tier_size metric."""
        config, now = self.store.config, self.store.clock()
        found = [(key, ref) async for key, ref in self.references()]
        self.store.metrics.tier_size = {tier: sum(r.size for _, r in found if r.tier == tier) for tier in config.tiers}
        moves: dict[str, Move] = {}
        for key, reference in found:
            move = self._by_rules_or_ttl(key, reference, now)
            if move is not None:
                moves[key] = move
        for tier, settings in config.tiers.items():  # capacity: the least recently read leave first
            below = config.next_slower(tier)
            if settings.capacity is None or below is None:
                continue
            staying = [(k, r) for k, r in found if r.tier == tier and (k not in moves or moves[k].target == tier)]
            incoming = sum(r.size for k, r in found if k in moves and moves[k].target == tier and r.tier != tier)
            used = sum(r.size for _, r in staying) + incoming
            for key, reference in sorted(staying, key=lambda item: (item[1].last_access, item[0])):
                if used <= settings.capacity:
                    break
                moves[key] = Move(key, tier, below, f"{tier} over capacity {settings.capacity}")
                used -= reference.size
        return list(moves.values())[: config.migration_batch]

    def _by_rules_or_ttl(self, key: str, reference: Reference, now: float) -> Move | None:
        config = self.store.config
        if self.store.expired(reference, now):
            return Move(key, reference.tier, None, "ttl of the last tier ran out")
        ttl = config.tiers[reference.tier].ttl
        below = config.next_slower(reference.tier)
        if ttl is not None and below is not None and now - reference.moved_at > ttl:
            return Move(key, reference.tier, below, f"ttl of {reference.tier} ran out")
        facts = reference.facts(now)
        for rule in config.compiled_rules:
            target = rule.target_for(facts)
            if target is not None:
                return Move(key, reference.tier, target, f"{rule.text} -> {rule.action}")
        return None

    # -- moving -----------------------------------------------------------------------------

    async def run_once(self) -> int:
        """One pass: plan, then move; the number of keys moved or expired."""
        done = 0
        self._moves = await self.plan()
        while self._moves:
            move = self._moves[0]
            try:
                moved = await self.apply(move)
            except Exception as exc:  # one key's trouble must not stop the others
                self.store.metrics.migration_failures += 1
                log.warning("moving %r failed: %s: %s", move.key, type(exc).__name__, exc)
                moved = False
            self._moves.pop(0)
            done += moved
        return done

    async def apply(self, move: Move) -> bool:
        if move.target is None:
            return await self.expire(move.key)
        return await self.migrate(move.key, move.target)

    async def migrate(self, key: str, target: str) -> bool:
        """Move ``key`` to ``target``: copy, switch with compare-and-set, remove the old copy.
        False when the key changed or left meanwhile (then nothing of this move remains)."""
        store = self.store
        raw, current = await store.load(key)
        if current is None or current.tier == target:
            return False
        value = await store.tier(current.tier).read(store.copy_name(current.tier, key, current.copy))
        if value is None:
            return False  # replaced or deleted since it was read: the next pass looks again
        token = new_copy_token(store.clock())
        new_name = store.copy_name(target, key, token)
        await store.tier(target).write(new_name, value)
        for _ in range(store.config.max_attempts):
            if not store.still_fresh(token):
                break  # the collector may already count the new copy as an orphan
            if await store.switch(key, raw, current.moved(target, token, store.clock())):
                await store._remove_old(key, current)
                self._count(current.tier, target)
                return True
            raw, latest = await store.load(key)
            if latest is None or latest.copy != current.copy:
                break  # a put or delete won: the older value must not come back
            current = latest  # only access statistics changed: keep them, try again
        await store.tier(target).remove(new_name)
        return False

    async def expire(self, key: str) -> bool:
        """Remove the copy of a value whose last tier's ttl ran out. The reference becomes a
        tombstone by compare-and-set (a put in between keeps its new value); the tombstone
        stays, because removing it safely needs a compare-and-delete the key-value interface
        does not offer. Reads see it as absent; the next put replaces it."""
        store = self.store
        raw, current = await store.load(key)
        if current is None or current.expired_marker or not store.expired(current, store.clock()):
            return False
        if not await store.switch(key, raw, current.tombstone()):
            return False
        await store._remove_old(key, current)
        store.metrics.expiration_count += 1
        return True

    def _count(self, source: str, target: str) -> None:
        if TIERS.index(target) < TIERS.index(source):
            self.store.metrics.promotion_count += 1
        else:
            self.store.metrics.demotion_count += 1

    async def run_forever(self, interval: float) -> None:
        """The background job: a pass every ``interval`` seconds until cancelled."""
        while True:
            with contextlib.suppress(Exception):
                await self.run_once()
            await asyncio.sleep(interval)

    # -- lifecycle --------------------------------------------------------------------------

    async def _step(self) -> bool:
        try:
            await self.run_once()
        except Exception:
            self._moves = []  # a failed plan: the next pass plans again
            raise
        return False  # a pass every interval

    async def _probe(self) -> None:
        await self.store.reference.get(self.store.reference_key("health"))

    def _in_flight(self) -> list[str]:
        return [f"key {m.key}: {m.source} -> {m.target or 'expired'}" for m in self._moves]


class GarbageCollector:
    """Finds and removes copies no reference names (what crashed writers and migrations leave)."""

    def __init__(self, store: TieredStorage) -> None:
        self.store = store

    async def orphans(self, *, grace: float | None = None) -> list[tuple[str, str]]:
        """(tier, copy name) of every unreferenced copy older than ``grace`` (default: the
        config's ``gc_grace``; 0 lists them all)."""
        store = self.store
        grace = store.config.gc_grace if grace is None else grace
        now = store.clock()
        found: list[tuple[str, str]] = []
        for tier_name, tier in store.tiers.items():
            prefix = store.tier_prefix(tier_name)
            names = [name async for name in tier.names(prefix)]
            for name in sorted(names):
                parts = split_copy_name(prefix, name)
                if parts is None:
                    continue
                key, token = parts
                created = token_time(token)
                if created is not None and now - created < grace:
                    continue
                _, reference = await store.load(key)
                if reference is None or (reference.tier, reference.copy) != (tier_name, token):
                    found.append((tier_name, name))
        return found

    async def collect(self, *, grace: float | None = None) -> int:
        """Remove the orphans; how many were removed."""
        removed = 0
        for tier_name, name in await self.orphans(grace=grace):
            parts = split_copy_name(self.store.tier_prefix(tier_name), name)
            assert parts is not None
            _, reference = await self.store.load(parts[0])
            if reference is not None and (reference.tier, reference.copy) == (tier_name, parts[1]):
                continue  # became current since it was listed
            await self.store.tier(tier_name).remove(name)
            removed += 1
        self.store.metrics.orphans_removed += removed
        return removed
