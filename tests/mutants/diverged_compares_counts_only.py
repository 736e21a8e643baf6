"""Mutant (a wrong judge, issue 66 item 2): the divergence check compares the nodes' message counts
only, so two copies holding as many messages but different sequences agree.

Loaded with ``-p tests.mutants.diverged_compares_counts_only``; see ``JUDGE_MUTANTS`` in
``tests/test_mutants.py``.
"""

from __future__ import annotations

import prism_testkit.stateful.checkers.replicas as replicas

from ._rewrite import rewrite_function_line

rewrite_function_line(
    replicas,
    "diverged",
    "        if len(set(copies.values())) > 1:",
    "        if len({s[2] if s else None for s in copies.values()}) > 1:  # the bug: counts only",
)
