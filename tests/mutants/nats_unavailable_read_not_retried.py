"""Mutant: a cluster's JetStream read answered "temporarily unavailable" (503, 10008: the node
asked knows the stream has no leader) is not asked again, so a read issued while a node knows
no leader fails with the API error instead of waiting the election out.

Loaded with ``-p tests.mutants.nats_unavailable_read_not_retried``. The one line of
``NatsDriver.api`` that asks such a read again is rewritten in the method's own source.
"""

from __future__ import annotations

from prism_testkit.backends.nats import driver

from tests.mutants._rewrite import rewrite_line

RETRIES = "if unavailable and (read or repeatable) and self.replicas > 1 and deadline - time.monotonic() > 0.1:"
BROKEN = "if False:  # the bug: a 503 is final"

rewrite_line(driver.NatsDriver, "api", RETRIES, BROKEN)
