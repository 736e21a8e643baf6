"""Mutant (a wrong judge, issue 66): the one-lease-holder checker compares each write with the
writes of the other leases, so a second holder of one of two leases goes unseen.

Loaded with ``-p tests.mutants.lease_checker_judges_a_lease_by_the_others``; see
``JUDGE_MUTANTS`` in ``tests/test_mutants.py``.
"""

from __future__ import annotations

import prism_testkit.stateful.leases as leases

from ._rewrite import rewrite_function_line

rewrite_function_line(
    leases,
    "one_lease_holder",
    "        held = _held_then([pair for pair in writes[:position] if pair.key == later.key], holder, epoch, start)",
    "        held = _held_then([pair for pair in writes[:position] if pair.key != later.key], holder, epoch, start)",
)
