"""Mutant (a wrong judge, issue 66): a failover excuses the loss of a write acknowledged after it
ended (by the new primary, which must keep it): the failover window is not looked at.

Loaded with ``-p tests.mutants.failover_loss_excused_after_the_failover``; see ``JUDGE_MUTANTS``
in ``tests/test_mutants.py``.
"""

from __future__ import annotations

import prism_testkit.stateful.checkers.failover as failover

from ._rewrite import rewrite_function_line

rewrite_function_line(
    failover,
    "excused",
    "    return held is not None and any(held < end for backend in backends for end in ends.get(backend, ()))",
    "    return any(True for backend in backends for end in ends.get(backend, ()))  # the bug: no window",
)
