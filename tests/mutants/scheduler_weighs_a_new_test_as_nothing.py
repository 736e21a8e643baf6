"""Mutant: a test no earlier run recorded weighs nothing, so every new test is dealt last, after
the short ones it should precede (issue 65).

Loaded with ``-p tests.mutants.scheduler_weighs_a_new_test_as_nothing``.
"""

from __future__ import annotations

from prism_testkit.registry import xdist_scheduler
from tests.mutants._rewrite import rewrite_function_line

rewrite_function_line(
    xdist_scheduler,
    "heaviest_first",
    "default = statistics.median(known) if known else 0.0",
    "default = 0.0",
)
