"""Mutant (a wrong judge, widening): a finding is dropped as an echo when it follows any
tolerated loss, not only when every loss it follows is tolerated.

Loaded with ``-p tests.mutants.failover_loss_echo_on_any_shared_loss``.
"""

from __future__ import annotations

import prism_testkit.stateful.checkers.failover as failover

from ._rewrite import rewrite_function_line

rewrite_function_line(
    failover,
    "without_echoes",
    "                if follows(anomaly) and follows(anomaly) <= gone:",
    "                if follows(anomaly) & gone:  # the bug: one shared loss excuses it",
)
