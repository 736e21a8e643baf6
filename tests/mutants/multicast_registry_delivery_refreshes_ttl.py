"""Mutant: a delivered copy counts as a heartbeat: after each successful send the recipient's
record is rewritten with its lease restarted from now, so an identity that stopped refreshing
keeps living (and receiving) as long as multicasts reach it.

Loaded with ``-p tests.mutants.multicast_registry_delivery_refreshes_ttl``.
"""

from __future__ import annotations

import asyncio

from prism_testkit.interfaces import Message
from prism_testkit.patterns import multicast_registry as mr
from prism_testkit.patterns.multicast_registry.registry import _InFlight, _Send

_deliver = mr.MulticastRegistry._deliver


async def deliver(
    self: mr.MulticastRegistry, flight: _InFlight, send: _Send, message: Message, gate: asyncio.Semaphore
) -> mr.DeliveryOutcome:
    outcome = await _deliver(self, flight, send, message, gate)
    if outcome.delivered:
        current = await self._read(send.identity)
        if current is not None and current.expires_at is not None:
            now = self.clock()
            lease = current.expires_at - current.updated_at
            # the bug: reaching an identity restarts its TTL
            await self._write(
                mr.Registration(current.identity, current.metadata, current.registered_at, now, now + lease), now
            )
    return outcome


mr.MulticastRegistry._deliver = deliver  # type: ignore[method-assign]
