"""Mutant (a wrong judge, issue 66 item 2): the log checker's poll-skip is off by one: the offset
the consumer should have read next is not among those it skipped, so a jump over exactly one
record passes.

Loaded with ``-p tests.mutants.log_skip_misses_the_next_offset``; see ``JUDGE_MUTANTS`` in
``tests/test_mutants.py``.
"""

from __future__ import annotations

from prism_testkit.stateful.checkers import log

from ._rewrite import rewrite_function_line

rewrite_function_line(
    log,
    "_check_step",
    "        skipped = known[bisect.bisect_left(known, expected) : bisect.bisect_left(known, offset)]",
    ("        skipped = known[bisect.bisect_right(known, expected) : bisect.bisect_left(known, offset)]  # the bug"),
)
