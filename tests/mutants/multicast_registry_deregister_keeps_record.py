"""Mutant: ``deregister`` reports success but leaves the record, so a deregistered identity
keeps receiving multicasts.

Loaded with ``-p tests.mutants.multicast_registry_deregister_keeps_record``.
"""

from __future__ import annotations

from prism_testkit.patterns.multicast_registry import MulticastRegistry, check_identity


async def deregister(self: MulticastRegistry, identity: str) -> bool:
    self.ensure_running("deregister")
    check_identity(identity)
    return await self.get(identity) is not None  # the bug: nothing is deleted


MulticastRegistry.deregister = deregister  # type: ignore[method-assign]
