"""Mutant: a multicast judges each identity's expiry when it reads its record instead of at the
instant the multicast began, so an identity live when the multicast began is dropped because
time passed while the registry was read.

Loaded with ``-p tests.mutants.multicast_registry_expiry_per_read``.
"""

from __future__ import annotations

from prism_testkit.patterns.multicast_registry import Filter, MulticastRegistry, Registration

_enumerate = MulticastRegistry._enumerate


async def enumerate_late(self: MulticastRegistry, where: Filter, now: float) -> list[Registration]:
    [_ async for _ in self.kv.scan(self.config.key_prefix)]  # the reads happen after the scan...
    return await _enumerate(self, where, self.clock())  # the bug: ...and expiry is judged then


MulticastRegistry._enumerate = enumerate_late  # type: ignore[method-assign]
