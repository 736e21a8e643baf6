"""Mutant (a wrong judge, issue 66 item 2): the total-queue checker calls an element lost unless it
came out exactly once, so a duplicate (allowed by at-least-once) reads as a loss.

Loaded with ``-p tests.mutants.total_queue_counts_a_duplicate_as_lost``; see ``JUDGE_MUTANTS``
in ``tests/test_mutants.py``.
"""

from __future__ import annotations

from prism_testkit.stateful.checkers import queue

from ._rewrite import rewrite_function_line

rewrite_function_line(
    queue,
    "_classify_enqueues",
    "        if acked is not None and not copies:",
    "        if acked is not None and len(copies) != 1:  # the bug: a duplicate is a loss",
)
