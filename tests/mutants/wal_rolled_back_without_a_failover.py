"""Mutant (a wrong judge, issue 66 item 2): the WAL checker tolerates a target value from an
unacknowledged write the log lacks as rolled back by a failover, when nothing failed over.

Loaded with ``-p tests.mutants.wal_rolled_back_without_a_failover``; see ``JUDGE_MUTANTS`` in
``tests/test_mutants.py``.
"""

from __future__ import annotations

import prism_testkit.stateful.checkers.wal as wal_checker

from ._rewrite import rewrite_function_line

rewrite_function_line(
    wal_checker,
    "_rolled_back_after_apply",
    "    if write.ok or _failed(write) or not failed_over(history):",
    "    if write.ok or _failed(write):  # the bug: no failover needed",
)
