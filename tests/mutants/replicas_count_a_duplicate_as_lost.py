"""Mutant (a wrong judge, issue 66 item 2): the replica checker calls a write a node holds twice
lost.

Loaded with ``-p tests.mutants.replicas_count_a_duplicate_as_lost``; see ``JUDGE_MUTANTS`` in
``tests/test_mutants.py``.
"""

from __future__ import annotations

import prism_testkit.stateful.checkers.replicas as replicas

from ._rewrite import rewrite_function_line

rewrite_function_line(
    replicas,
    "check_replicas",
    "        missing = [i for i, value in enumerate(order) if value not in held]",
    "        missing = [i for i, value in enumerate(order) if held[value] != 1]  # the bug: twice is lost",
)
