"""Mutant: on a reconnect the NATS client sends again only the oldest PING awaiting a PONG,
so of two flushes sent as the server dropped an idle connection, the second waits out its
timeout on a connection that works again.

Loaded with ``-p tests.mutants.nats_reconnect_resends_the_oldest_flush_only``.
"""

from __future__ import annotations

from nats.aio.client import PING_PROTO
from nats.aio.client import Client as NATS

from prism_testkit.backends.nats.client import ClosingClient


async def _process_connect_init(self: ClosingClient) -> None:
    waiting = [future for future in self._pongs if not future.done()][:1]
    await NATS._process_connect_init(self)
    for future in waiting:
        self._pongs.append(future)
        self._pending.append(PING_PROTO)
        self._pending_data_size += len(PING_PROTO)


ClosingClient._process_connect_init = _process_connect_init  # type: ignore[method-assign]
