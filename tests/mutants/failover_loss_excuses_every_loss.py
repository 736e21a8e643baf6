"""Mutant (a wrong judge, issue 66): the excuse widened back to what it was: any failover of a
backend without the promise excuses every loss of the example, on any slot, at any time.

Loaded with ``-p tests.mutants.failover_loss_excuses_every_loss``; see ``JUDGE_MUTANTS`` in
``tests/test_mutants.py``.
"""

from __future__ import annotations

import prism_testkit.stateful.checkers.failover as failover

from ._rewrite import rewrite_function_line

rewrite_function_line(
    failover,
    "excused",
    "    return held is not None and any(held < end for backend in backends for end in ends.get(backend, ()))",
    "    return bool(ends)  # the bug: any failover without the promise excuses every loss",
)
