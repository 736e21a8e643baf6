"""Mutant (a wrong judge, issue 66 item 2): a failover of a backend without the promise excuses
every anomaly, not only losses: a duplicate or an invented write passes.

Loaded with ``-p tests.mutants.failover_loss_excuses_every_anomaly``; see ``JUDGE_MUTANTS`` in
``tests/test_mutants.py``.
"""

from __future__ import annotations

import prism_testkit.stateful.failover_loss as failover_loss

from ._rewrite import rewrite_function_line

rewrite_function_line(
    failover_loss,
    "tolerate_failover_losses",
    "        anomalies = {name: found for name, found in verdict.anomalies.items() if not is_loss(name)}",
    "        anomalies = {}  # the bug: a failover excuses everything",
)
