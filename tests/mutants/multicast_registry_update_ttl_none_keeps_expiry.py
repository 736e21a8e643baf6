"""Mutant: ``update(..., ttl=None)`` (and so ``refresh()`` without a TTL and no
``default_ttl``) keeps the old expiry instead of making the identity never expire: ``None``
is confused with "not given".

Loaded with ``-p tests.mutants.multicast_registry_update_ttl_none_keeps_expiry``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prism_testkit.patterns import multicast_registry as mr
from prism_testkit.patterns.multicast_registry.registry import _KEEP

_update = mr.MulticastRegistry.update


async def update(
    self: mr.MulticastRegistry,
    identity: str,
    changes: Mapping[str, Any] | None = None,
    *,
    replace: bool = False,
    ttl: Any = _KEEP,
) -> mr.Registration:
    return await _update(self, identity, changes, replace=replace, ttl=_KEEP if ttl is None else ttl)  # the bug


mr.MulticastRegistry.update = update  # type: ignore[method-assign]
