"""Mutant (a wrong judge, issue 66 item 2): the divergence check compares the first node's copy
with the last node's only.

Loaded with ``-p tests.mutants.diverged_compares_first_and_last_nodes``; see ``JUDGE_MUTANTS``
in ``tests/test_mutants.py``.
"""

from __future__ import annotations

import prism_testkit.stateful.checkers.replicas as replicas

from ._rewrite import rewrite_function_line

rewrite_function_line(
    replicas,
    "diverged",
    "        if len(set(copies.values())) > 1:",
    "        if list(copies.values())[0] != list(copies.values())[-1]:  # the bug: two nodes judged for all",
)
