"""Mutant (a wrong judge, issue 66 item 2): losses are tolerated when any backend failed over, even
one that promises to survive it (a tolerated window applied outside its finding).

Loaded with ``-p tests.mutants.failover_loss_excused_by_any_failover``; see ``JUDGE_MUTANTS`` in
``tests/test_mutants.py``.
"""

from __future__ import annotations

import prism_testkit.stateful.checkers.failover as failover

from ._rewrite import rewrite_function_line

rewrite_function_line(
    failover,
    "tolerate_failover_losses",
    "    ends = {backend: found for backend, found in failover_ends(history).items() if backend in unpromised}",
    "    ends = failover_ends(history)  # the bug: any failover excuses",
)
