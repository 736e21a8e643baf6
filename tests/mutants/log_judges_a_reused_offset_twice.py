"""Mutant (a wrong judge): the log checker's inconsistent offsets never follow a lost write, so
an offset given again after a failover's tolerated loss is a second, red verdict (issue 64).

Loaded with ``-p tests.mutants.log_judges_a_reused_offset_twice``.
"""

from __future__ import annotations

from prism_testkit.stateful.checkers import log

from ._rewrite import rewrite_function_line

rewrite_function_line(
    log,
    "_offset_anomalies",
    "            echo = {FOLLOWS: tuple((name, v) for v in gone)} if gone and len(held) - len(gone) <= 1 else {}",
    "            echo = {}  # the bug: the offset's loss is judged again",
)
