"""Mutant: tiered storage's ``put`` ignores ``max_value_size`` and stores any value.

Loaded with ``-p tests.mutants.tiered_put_ignores_max_value_size``.
"""

from __future__ import annotations

from prism_testkit.patterns.tiered_storage import TieredStorage
from prism_testkit.patterns.tiered_storage.errors import VersionConflict
from prism_testkit.patterns.tiered_storage.references import Reference, new_copy_token


async def _put(self: TieredStorage, key: str, value: bytes) -> None:
    tier_name = self.config.write_tier  # the bug: no size check
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
        await tier.remove(self.copy_name(tier_name, key, token))
    raise VersionConflict(key, self.config.max_attempts)


TieredStorage.put = _put  # type: ignore[method-assign]
