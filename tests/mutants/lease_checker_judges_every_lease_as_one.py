"""Mutant (a wrong judge, issue 66): the one-lease-holder checker judges the writes of every
lease as writes of one, so two outboxes' relays, each holding its own lease, are a second holder.

Loaded with ``-p tests.mutants.lease_checker_judges_every_lease_as_one``; see ``JUDGE_MUTANTS``
in ``tests/test_mutants.py``.
"""

from __future__ import annotations

import prism_testkit.stateful.leases as leases

from ._rewrite import rewrite_function_line

rewrite_function_line(
    leases,
    "one_lease_holder",
    "        held = _held_then([pair for pair in writes[:position] if pair.key == later.key], holder, epoch, start)",
    "        held = _held_then(writes[:position], holder, epoch, start)  # the bug",
)
