"""Mutant (a wrong judge, widening): any missing copies count as the echo of a lost key, however
many are missing, so a copy a migrator bug lost beside a failover's loss passes as tolerated.

Loaded with ``-p tests.mutants.tiered_copy_count_excused_by_any_lost_key``.
"""

from __future__ import annotations

import prism_testkit.suites._tiered as tiered

from ._rewrite import rewrite_function_line

rewrite_function_line(
    tiered,
    "missing_copies",
    "    explained = bool(read_lost) and held == owed - len(read_lost)",
    "    explained = bool(read_lost)  # the bug: the shortfall is not compared with the lost keys",
)
