"""Mutant: the NATS client forgets, as nats-py 2.16 does, the PINGs awaiting a PONG when it
reconnects: a flush sent as the server dropped an idle connection waits out its timeout on a
connection that works again (docs/findings.md).

Loaded with ``-p tests.mutants.nats_reconnect_forgets_a_flush``: the client's override is
removed, so nats-py's own connect handshake runs.
"""

from __future__ import annotations

from prism_testkit.backends.nats.client import ClosingClient

del ClosingClient._process_connect_init
