"""Mutant (a wrong judge): the tiered storage checker counts a key whose final read was judged
lost again as a missing copy, so a loss a failover excuses is also a red (issue 64).

Loaded with ``-p tests.mutants.tiered_counts_a_lost_key_as_missing_copy``.
"""

from __future__ import annotations

import prism_testkit.suites._tiered as tiered

from ._rewrite import rewrite_function_line

rewrite_function_line(
    tiered,
    "missing_copies",
    "    explained = bool(read_lost) and held == owed - len(read_lost)",
    "    explained = False  # the bug: the lost read's missing copy is a finding of its own",
)
