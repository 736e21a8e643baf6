"""Mutant: a consumer's processed marks are keyed by the source and the message id, not by the
consumer's name. Two consumers of one topic (two services each handling every message) share
the marks: whichever handles a message first marks it, and the other skips it as a duplicate.

Loaded with ``-p tests.mutants.consumer_marks_per_source_only``; the consumer suite's test of
two consumer names must fail.
"""

from __future__ import annotations

from prism_testkit.patterns.consumer import ConsumerConfig
from tests.mutants._rewrite import rewrite_line

rewrite_line(
    ConsumerConfig,
    "mark_key",
    'return f"{self.state_prefix}{self.name}/{self.source}/done/{message_id}"',
    'return f"{self.state_prefix}{self.source}/done/{message_id}"  # the bug: marks shared by every name',
)
