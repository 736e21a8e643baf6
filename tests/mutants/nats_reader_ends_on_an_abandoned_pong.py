"""Mutant: the NATS client answers each PONG as nats-py 2.16 does, resolving the oldest PING's
future even when a flush that timed out had cancelled it: the reader raises and ends, and the
connection delivers nothing from then on (docs/findings.md).

Loaded with ``-p tests.mutants.nats_reader_ends_on_an_abandoned_pong``: the client's override is
removed, so nats-py's own method answers.
"""

from __future__ import annotations

from prism_testkit.backends.nats.client import ClosingClient

del ClosingClient._process_pong
