"""Mutant: a JetStream publish answered "no responders" on a cluster is sent again only for a
moment (2 s, enough for a stream just created to take publishes), not for an election, so a
write issued while a stream's leader is gone (between the kill and the next election, which
nats-server's raft starts 4-9 s after the last heartbeat) fails instead of waiting the election
out (``LEADERLESS_WAIT``).

Not "never sent again": that also fails the suite's setup whenever the first publish to the
stream it creates on a fresh cluster is answered "no responders" (1 run in 10 here), a failure
with nothing to do with a leader change. The bug is the same one, a wait too short for an
election (nats.go's publish retries, 2 x 250 ms by default, are the model), and it is met only
where the suite creates the situation.

Loaded with ``-p tests.mutants.nats_publish_no_responders_not_retried``. The one line of
``JetStream.publish`` that sets how long a leader is waited out is rewritten in the method's
own source, so the rest of the method stays the shipped one.
"""

from __future__ import annotations

from prism_testkit.backends.nats import jetstream
from tests.mutants._rewrite import rewrite_line

WAITS = "leaderless_until = started + LEADERLESS_WAIT * patience.slowness()"
BROKEN = "leaderless_until = started + 2.0  # the bug: no responders is waited out for a moment only"

rewrite_line(jetstream.JetStream, "publish", WAITS, BROKEN)
