"""Mutant (a wrong judge, issue 66 item 2): the total-queue checker takes any drain, even one
before the acknowledgement, as the look that proves a loss: an element nobody looked for after
its write is called lost, not unseen.

Loaded with ``-p tests.mutants.total_queue_drain_before_the_ack_proves_a_loss``; see
``JUDGE_MUTANTS`` in ``tests/test_mutants.py``.
"""

from __future__ import annotations

from prism_testkit.stateful.checkers import queue

from ._rewrite import rewrite_function_line

rewrite_function_line(
    queue,
    "_looked_after",
    "    return next((p for p in reversed(looks[queue]) if since.completed_before(p)), None)",
    "    return next(reversed(looks[queue]), None)  # the bug: a look before the write proves it gone",
)
