"""Mutant (a wrong judge, issue 66 item 2): the total-queue checker calls a delivered element
unexpected when any attempt to enqueue it failed, though a retry of it was acknowledged.

Loaded with ``-p tests.mutants.total_queue_one_failed_attempt_makes_unexpected``; see
``JUDGE_MUTANTS`` in ``tests/test_mutants.py``.
"""

from __future__ import annotations

from prism_testkit.stateful.checkers import queue

from ._rewrite import rewrite_function_line

rewrite_function_line(
    queue,
    "_classify_deliveries",
    "        if not tries or all(p.type is OpType.FAIL for p in tries):",
    "        if not tries or any(p.type is OpType.FAIL for p in tries):  # the bug: one failure is enough",
)
