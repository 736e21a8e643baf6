"""Mutant (a wrong judge, issue 66 item 2): the WAL checker calls a mutation applied twice never
applied.

Loaded with ``-p tests.mutants.wal_counts_a_double_as_lost``; see ``JUDGE_MUTANTS`` in
``tests/test_mutants.py``.
"""

from __future__ import annotations

import prism_testkit.stateful.checkers.wal as wal_checker

from ._rewrite import rewrite_function_line

rewrite_function_line(
    wal_checker,
    "_classify_applies",
    "        if counts[offset] == 0 and offset not in skipped and offset not in dead_letters:",
    "        if counts[offset] != 1 and offset not in skipped and offset not in dead_letters:  # the bug",
)
