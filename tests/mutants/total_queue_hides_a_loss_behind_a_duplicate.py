"""Mutant (a wrong judge, issue 66 item 2): the total-queue checker looks for losses only when
fewer copies came out than were attempted, so one element delivered twice covers another that
never came out.

Loaded with ``-p tests.mutants.total_queue_hides_a_loss_behind_a_duplicate``; see
``JUDGE_MUTANTS`` in ``tests/test_mutants.py``.
"""

from __future__ import annotations

from prism_testkit.stateful.checkers import queue

from ._rewrite import rewrite_function_line

rewrite_function_line(
    queue,
    "_classify_enqueues",
    "        if acked is not None and not copies:",
    "        if acked is not None and not copies"
    " and sum(map(len, index.deliveries.values())) < len(index.attempts):  # the bug",
)
