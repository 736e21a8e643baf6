"""Mutant: the tiered storage migrator switches the reference with a plain write instead of
compare-and-set, so a put that lands during the migration is overwritten by the older copy.

Loaded with ``-p tests.mutants.tiered_migrator_switches_without_cas``; the stateful tiered
storage suite must report the older value as stale.
"""

from __future__ import annotations

from prism_testkit.patterns.tiered_storage import Migrator, TieredStorage
from prism_testkit.patterns.tiered_storage.references import new_copy_token


async def _switch_blindly(self: Migrator, key: str, target: str) -> bool:
    store: TieredStorage = self.store
    _, current = await store.load(key)
    if current is None or current.tier == target:
        return False
    value = await store.tier(current.tier).read(store.copy_name(current.tier, key, current.copy))
    if value is None:
        return False
    token = new_copy_token(store.clock())
    await store.tier(target).write(store.copy_name(target, key, token), value)
    moved = current.moved(target, token, store.clock())
    await store.reference.put(store.reference_key(key), moved.encode())  # the bug: no compare-and-set
    await store.tier(current.tier).remove(store.copy_name(current.tier, key, current.copy))
    return True


Migrator.migrate = _switch_blindly  # type: ignore[method-assign]
