"""Mutant (a wrong judge, issue 66 item 2): a killed consensus leader counts as a failover that
excuses losses, though a raft cluster promises to lose nothing through it.

Loaded with ``-p tests.mutants.failover_loss_a_killed_leader_excuses``; see ``JUDGE_MUTANTS`` in
``tests/test_mutants.py``.
"""

from __future__ import annotations

import prism_testkit.stateful.checkers.failover as failover

from ._rewrite import rewrite_function_line

rewrite_function_line(
    failover,
    "failover_ends",
    '        if pair.process == "nemesis" and pair.f.startswith("failover"):',
    '        if pair.process == "nemesis" and (pair.f.startswith("failover") or pair.f == "kill-leader"):',
)
