"""Mutant: the tiered storage migrator removes the old copy before it switches the reference,
so a migrator that dies between the two leaves a reference to a copy that no longer exists.

Loaded with ``-p tests.mutants.tiered_migrator_deletes_before_switch``; the stateful tiered
storage suite must report the value as lost.
"""

from __future__ import annotations

from prism_testkit.patterns.tiered_storage import Migrator


async def _delete_then_switch(self: Migrator, key: str, target: str) -> bool:
    store = self.store
    raw, current = await store.load(key)
    if current is None or current.tier == target:
        return False
    value = await store.tier(current.tier).read(store.copy_name(current.tier, key, current.copy))
    if value is None:
        return False
    token = f"{int(store.clock() * 1000):013d}-mutant"
    await store.tier(target).write(store.copy_name(target, key, token), value)
    await store.tier(current.tier).remove(store.copy_name(current.tier, key, current.copy))  # the bug: too early
    return await store.switch(key, raw, current.moved(target, token, store.clock()))


Migrator.migrate = _delete_then_switch  # type: ignore[method-assign]
