"""Mutant: a cluster's key-value read is a direct get (``allow_direct``), which every replica of
the stream answers, a follower that has not applied the last write too, instead of the stream
leader through the API.

Loaded with ``-p tests.mutants.nats_cluster_reads_direct_from_followers``. The one line of
``JetStream.last_msg_direct`` that sends a cluster's read to the leader is rewritten in the
method's own source.
"""

from __future__ import annotations

from prism_testkit.backends.nats import jetstream
from tests.mutants._rewrite import rewrite_line

TO_THE_LEADER = "if self.replicas > 1:"
BROKEN = "if False:  # the bug: any replica answers"

rewrite_line(jetstream.JetStream, "last_msg_direct", TO_THE_LEADER, BROKEN)
