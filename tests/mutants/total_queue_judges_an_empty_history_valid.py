"""Mutant (a wrong judge, issue 66 item 2): the total-queue checker passes a history that enqueued
and dequeued nothing.

Loaded with ``-p tests.mutants.total_queue_judges_an_empty_history_valid``; see
``JUDGE_MUTANTS`` in ``tests/test_mutants.py``.
"""

from __future__ import annotations

from prism_testkit.stateful.checkers import queue

from ._rewrite import rewrite_function_line

rewrite_function_line(
    queue,
    "total_queue",
    '        _judged_nothing(findings, "enqueued or dequeued")',
    "        pass  # the bug: nothing judged is a pass",
)
