"""Mutant: a log consumer's saved position is keyed by the consumer's name alone, not by the log
it reads. One name over two logs (the same service reading two streams) saves both positions
under one key: after a restart each log resumes from whichever was saved last, skipping records
of one and handling records of the other again.

Loaded with ``-p tests.mutants.consumer_position_per_name_only``; the consumer suite's test of
two sources must fail.
"""

from __future__ import annotations

from prism_testkit.patterns.consumer import ConsumerConfig
from tests.mutants._rewrite import rewrite_line

rewrite_line(
    ConsumerConfig,
    "position_key",
    'return f"{self.state_prefix}{self.name}/{self.source}/position"',
    'return f"{self.state_prefix}{self.name}/position"  # the bug: one position per name, whatever the source',
)
