"""Mutant: a tier's ttl is measured from when the value was written instead of from when it
entered the tier, so a value demoted into a tier leaves it early (ttl counted twice over).

Loaded with ``-p tests.mutants.tiered_tier_ttl_from_written_at``.
"""

from __future__ import annotations

from prism_testkit.patterns.tiered_storage import Migrator
from prism_testkit.patterns.tiered_storage.migrator import Move
from prism_testkit.patterns.tiered_storage.references import Reference


def _by_rules_or_ttl(self: Migrator, key: str, reference: Reference, now: float) -> Move | None:
    config = self.store.config
    if self.store.expired(reference, now):
        return Move(key, reference.tier, None, "ttl of the last tier ran out")
    ttl = config.tiers[reference.tier].ttl
    below = config.next_slower(reference.tier)
    if ttl is not None and below is not None and now - reference.written_at > ttl:  # the bug: written_at
        return Move(key, reference.tier, below, f"ttl of {reference.tier} ran out")
    facts = reference.facts(now)
    for rule in config.compiled_rules:
        target = rule.target_for(facts)
        if target is not None:
            return Move(key, reference.tier, target, f"{rule.text} -> {rule.action}")
    return None


Migrator._by_rules_or_ttl = _by_rules_or_ttl  # type: ignore[method-assign]
