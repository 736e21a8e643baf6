"""Mutant (a wrong judge): the runner tolerates a failover's losses but keeps every finding that
only follows from them, so one tolerated loss is also a red (issue 64).

Loaded with ``-p tests.mutants.failover_loss_keeps_echoes``.
"""

from __future__ import annotations

import prism_testkit.stateful.checkers.failover as failover
from prism_testkit.stateful.checkers import Verdict


def _kept(verdict: Verdict) -> Verdict:
    return verdict  # the bug: an echo of a tolerated loss is judged again


failover.without_echoes = _kept
