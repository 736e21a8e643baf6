"""Mutant: an update without ``ttl`` restarts the identity's lease (its original TTL counted
again from now) instead of keeping its expiry, so changing metadata keeps an identity alive
past the moment it should have expired.

Loaded with ``-p tests.mutants.multicast_registry_update_restarts_ttl``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prism_testkit.patterns import multicast_registry as mr
from prism_testkit.patterns.multicast_registry.registry import _KEEP
from prism_testkit.patterns.multicast_registry.validation import _IDENTITY

_update = mr.MulticastRegistry.update


async def update(
    self: mr.MulticastRegistry,
    identity: str,
    changes: Mapping[str, Any] | None = None,
    *,
    replace: bool = False,
    ttl: Any = _KEEP,
) -> mr.Registration:
    if ttl is _KEEP and isinstance(identity, str) and _IDENTITY.match(identity):
        current = await self._read(identity)
        if current is not None and current.expires_at is not None:
            ttl = current.expires_at - current.updated_at  # the bug: the lease starts again
    return await _update(self, identity, changes, replace=replace, ttl=ttl)


mr.MulticastRegistry.update = update  # type: ignore[method-assign]
