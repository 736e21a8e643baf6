"""Mutant: a test no earlier run recorded weighs nothing, so every new test is dealt last, after
the short ones it should precede, and a shard of new tests is thought empty (issue 65).

Loaded with ``-p tests.mutants.scheduler_weighs_a_new_test_as_nothing``.
"""

from __future__ import annotations

from prism_testkit.registry import shards
from tests.mutants._rewrite import rewrite_function_line

rewrite_function_line(shards, "weigh", "default = statistics.median(known) if known else 1.0", "default = 0.0")
