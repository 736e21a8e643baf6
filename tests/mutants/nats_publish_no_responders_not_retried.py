"""Mutant: a JetStream publish answered "no responders" on a cluster is not sent again, so a
write issued while a stream's leader is gone (between the kill and the next election) fails
instead of waiting the election out (``LEADERLESS_WAIT``).

Loaded with ``-p tests.mutants.nats_publish_no_responders_not_retried``. The one line of
``NatsDriver.publish`` that waits a leader out is rewritten in the method's own source, so the
rest of the method stays the shipped one.
"""

from __future__ import annotations

from prism_testkit.backends.nats import driver

from tests.mutants._rewrite import rewrite_line

WAITS = "if self.replicas == 1 or time.monotonic() > leaderless_until:"
BROKEN = "if True:  # the bug: no responders is never waited out"

rewrite_line(driver.NatsDriver, "publish", WAITS, BROKEN)
