"""Mutant (a wrong judge, issue 66 item 2): the log checker's proof of a lost write is off by one:
a read that reached the write's own offset (and found another value there) does not count, so
the loss reads as unseen.

Loaded with ``-p tests.mutants.log_lost_write_needs_a_read_beyond_it``; see ``JUDGE_MUTANTS`` in
``tests/test_mutants.py``.
"""

from __future__ import annotations

from prism_testkit.stateful.checkers import log

from ._rewrite import rewrite_function_line

rewrite_function_line(
    log,
    "_write_anomalies",
    "            beyond = next((p for p, highest in log.reads if highest >= offset), None)",
    "            beyond = next((p for p, highest in log.reads if highest > offset), None)  # the bug",
)
