"""Mutant (a wrong judge, issue 66): the one-lease-holder checker lets another holder write
the epoch a holder holds (only an older epoch over a later one counts).

Loaded with ``-p tests.mutants.lease_checker_ignores_the_same_epoch``; see ``JUDGE_MUTANTS`` in
``tests/test_mutants.py``.
"""

from __future__ import annotations

import prism_testkit.stateful.leases as leases

from ._rewrite import rewrite_function_line

rewrite_function_line(
    leases,
    "_held_then",
    "        if other != holder and other_epoch >= epoch and since <= start < until:",
    "        if other != holder and other_epoch > epoch and since <= start < until:  # the bug",
)
