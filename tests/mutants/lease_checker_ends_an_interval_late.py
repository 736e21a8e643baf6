"""Mutant (a wrong judge, issue 66): the one-lease-holder checker counts the instant a lease
runs out as held (an off-by-one at the interval's end).

Loaded with ``-p tests.mutants.lease_checker_ends_an_interval_late``; see ``JUDGE_MUTANTS`` in
``tests/test_mutants.py``.
"""

from __future__ import annotations

import prism_testkit.stateful.leases as leases

from ._rewrite import rewrite_function_line

rewrite_function_line(
    leases,
    "_held_then",
    "        if other != holder and other_epoch >= epoch and since <= start < until:",
    "        if other != holder and other_epoch >= epoch and since <= start <= until:  # the bug",
)
