"""Mutant (a wrong judge, issue 66 item 2): the total-queue checker looks for losses only when
fewer copies came out than were attempted, so one element delivered twice covers another that
never came out.

Loaded with ``-p tests.mutants.total_queue_hides_a_loss_behind_a_duplicate``; see
``JUDGE_MUTANTS`` in ``tests/test_mutants.py``.
"""

from __future__ import annotations

import prism_testkit.stateful.checkers as checkers

from ._rewrite import rewrite_function_line

rewrite_function_line(
    checkers,
    "total_queue",
    "        if acked is not None and not copies:",
    ("        if acked is not None and not copies and sum(map(len, deliveries.values())) < len(attempts):  # the bug"),
)
