"""Mutant: the NATS driver's client does not reconnect when its connection closes, so a client
whose node died (killed, restarted) fails every later operation with "connection closed"
instead of moving to another node of its cluster.

Loaded with ``-p tests.mutants.nats_client_does_not_reconnect``. The one line of
``ClosingClient.opened`` that allows reconnects is rewritten in the method's own source.
"""

from __future__ import annotations

from prism_testkit.backends.nats import client
from tests.mutants._rewrite import rewrite_line

RECONNECTS = "allow_reconnect=True,"
BROKEN = "allow_reconnect=False,  # the bug: a closed connection stays closed"

rewrite_line(client.ClosingClient, "opened", RECONNECTS, BROKEN)
