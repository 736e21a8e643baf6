"""Mutant (a wrong judge, issue 66): a failover of one slot's backend excuses a loss on another
slot's, one that promises to survive a failover (a composite suite: tiered storage with hot on
Sentinel and cold on synchronous PostgreSQL).

Loaded with ``-p tests.mutants.failover_loss_excused_on_any_slot``; see ``JUDGE_MUTANTS`` in
``tests/test_mutants.py``.
"""

from __future__ import annotations

import prism_testkit.stateful.checkers.failover as failover

from ._rewrite import rewrite_function_line

rewrite_function_line(
    failover,
    "excused",
    "        backends = {backend for slot, backend in slots.items() if named is None or slot in named}",
    "        backends = set(slots.values())  # the bug: the slot the loss names is not looked at",
)
