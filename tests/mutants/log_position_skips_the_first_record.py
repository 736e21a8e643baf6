"""Mutant (a wrong judge, issue 66 item 2): the log checker never checks a poll's first record
against the consumer's position.

Loaded with ``-p tests.mutants.log_position_skips_the_first_record``; see ``JUDGE_MUTANTS`` in
``tests/test_mutants.py``.
"""

from __future__ import annotations

from prism_testkit.stateful.checkers import log

from ._rewrite import rewrite_function_line

rewrite_function_line(
    log,
    "_position_anomalies",
    "        for offset, _value in _records(pair):",
    "        for offset, _value in _records(pair)[1:]:  # the bug: the first record is never checked",
)
