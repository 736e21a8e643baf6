"""Mutant: a cluster's JetStream read answered "temporarily unavailable" (503, 10008: the node
asked knows the stream has no leader) is not asked again, so a read issued while a node knows
no leader fails with the API error instead of waiting the election out.

Loaded with ``-p tests.mutants.nats_unavailable_read_not_retried``. The one line of
``JetStream.api`` that decides which answers are asked again is rewritten in the method's own
source, so a create refused for want of placeable peers is still sent again.
"""

from __future__ import annotations

from prism_testkit.backends.nats import jetstream
from tests.mutants._rewrite import rewrite_line

RETRIES = "transient = (unavailable and (read or repeatable)) or (code == ERR_NO_PEERS and repeatable)"
BROKEN = "transient = code == ERR_NO_PEERS and repeatable  # the bug: a 503 is final"

rewrite_line(jetstream.JetStream, "api", RETRIES, BROKEN)
