"""Mutant: on a registry backend without ``keyvalue.ttl``, the write that discovers it (the put
with a TTL refused with ``NotSupported``) is dropped instead of retried without a TTL: that
registration reports success and is never stored.

Loaded with ``-p tests.mutants.multicast_registry_ttl_fallback_drops_write``.
"""

from __future__ import annotations

from prism_testkit.errors import NotSupported
from prism_testkit.patterns.multicast_registry import MulticastRegistry, Registration
from prism_testkit.patterns.multicast_registry.records import _encode


async def write(self: MulticastRegistry, reg: Registration, now: float) -> None:
    raw, key = _encode(reg), self.key(reg.identity)
    if self._backend_ttl and reg.expires_at is not None:
        try:
            await self.kv.put(key, raw, ttl=max(reg.expires_at - now, 0.0) + self.config.eviction_grace)
        except NotSupported:
            self._backend_ttl = False
            self.metrics.backend_ttl_unsupported += 1
        return  # the bug: the refused write is not made again without a TTL
    await self.kv.put(key, raw)


MulticastRegistry._write = write  # type: ignore[method-assign]
