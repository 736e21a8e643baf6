"""Mutant (a wrong judge, issue 66): the one-lease-holder checker compares a write with the
latest earlier write only, not with every interval still running.

Loaded with ``-p tests.mutants.lease_checker_judges_the_latest_write``; see ``JUDGE_MUTANTS`` in
``tests/test_mutants.py``.
"""

from __future__ import annotations

import prism_testkit.stateful.leases as leases

from ._rewrite import rewrite_function_line

rewrite_function_line(
    leases,
    "_held_then",
    "    for pair in reversed(earlier):",
    "    for pair in reversed(earlier[-1:]):  # the bug",
)
