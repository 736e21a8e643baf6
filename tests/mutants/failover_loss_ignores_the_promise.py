"""Mutant (a wrong judge, widening): any failover excuses losses, also of a backend that
declares ``survives_failover`` (a tolerated window applied outside its finding).

Loaded with ``-p tests.mutants.failover_loss_ignores_the_promise``.
"""

from __future__ import annotations

import prism_testkit.stateful.checkers.failover as failover

from ._rewrite import rewrite_function_line

rewrite_function_line(
    failover,
    "tolerate_failover_losses",
    "    ends = {backend: found for backend, found in failover_ends(history).items() if backend in unpromised}",
    "    ends = failover_ends(history)  # the bug: the promise is not looked at",
)
