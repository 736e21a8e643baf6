"""Mutant (a wrong judge, issue 66 item 2): the WAL checker's apply order check never compares a
key's first apply with its second.

Loaded with ``-p tests.mutants.wal_order_skips_the_first_apply``; see ``JUDGE_MUTANTS`` in
``tests/test_mutants.py``.
"""

from __future__ import annotations

import prism_testkit.stateful.checkers.wal as wal_checker

from ._rewrite import rewrite_function_line

rewrite_function_line(
    wal_checker,
    "_classify_apply_order",
    "        backwards = [(a, b) for a, b in itertools.pairwise(offsets) if b < a]",
    "        backwards = [(a, b) for a, b in itertools.pairwise(offsets[1:]) if b < a]  # the bug",
)
