"""Mutant (a wrong judge, issue 66 item 2): a failover of a backend without the promise excuses
every anomaly, not only losses: a duplicate or an invented write passes.

Loaded with ``-p tests.mutants.failover_loss_excuses_every_anomaly``; see ``JUDGE_MUTANTS`` in
``tests/test_mutants.py``.
"""

from __future__ import annotations

import prism_testkit.stateful.checkers.failover as failover

from ._rewrite import rewrite_function_line

rewrite_function_line(
    failover,
    "tolerate_failover_losses",
    "        losses = [a for name, found in verdict.anomalies.items() if is_loss(name) for a in found]",
    "        losses = [a for found in verdict.anomalies.values() for a in found]  # the bug: excuses everything",
)
