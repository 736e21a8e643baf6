"""Mutant: a cluster's JetStream read left unanswered is not asked again: it waits out its
whole timeout once, so a read issued while a stream has no leader (which drops it unanswered)
ends as an unknown outcome although a new leader answers a moment later.

Loaded with ``-p tests.mutants.nats_cluster_read_not_asked_again``. The one line of
``JetStream.api`` that sets how often a read is asked is rewritten in the method's own source.
"""

from __future__ import annotations

from prism_testkit.backends.nats import jetstream
from tests.mutants._rewrite import rewrite_line

ASKS = "each = retry_read_every if read else API_TIMEOUT if repeatable else overall"
BROKEN = "each = overall if read else API_TIMEOUT if repeatable else overall  # the bug: a read is asked once"

rewrite_line(jetstream.JetStream, "api", ASKS, BROKEN)
