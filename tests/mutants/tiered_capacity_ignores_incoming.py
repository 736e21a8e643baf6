"""Mutant: the capacity planner counts only the values already in a tier, not those the same
pass moves into it, so promotions can overfill a tier beyond its capacity.

Loaded with ``-p tests.mutants.tiered_capacity_ignores_incoming``.
"""

from __future__ import annotations

from prism_testkit.patterns.tiered_storage import Migrator
from prism_testkit.patterns.tiered_storage.migrator import Move


async def _plan(self: Migrator) -> list[Move]:
    config, now = self.store.config, self.store.clock()
    found = [(key, ref) async for key, ref in self.references()]
    self.store.metrics.tier_size = {tier: sum(r.size for _, r in found if r.tier == tier) for tier in config.tiers}
    moves: dict[str, Move] = {}
    for key, reference in found:
        move = self._by_rules_or_ttl(key, reference, now)
        if move is not None:
            moves[key] = move
    for tier, settings in config.tiers.items():
        below = config.next_slower(tier)
        if settings.capacity is None or below is None:
            continue
        staying = [(k, r) for k, r in found if r.tier == tier and (k not in moves or moves[k].target == tier)]
        used = sum(r.size for _, r in staying)  # the bug: values moving in this pass are not counted
        for key, reference in sorted(staying, key=lambda item: (item[1].last_access, item[0])):
            if used <= settings.capacity:
                break
            moves[key] = Move(key, tier, below, f"{tier} over capacity {settings.capacity}")
            used -= reference.size
    return list(moves.values())[: config.migration_batch]


Migrator.plan = _plan  # type: ignore[method-assign]
