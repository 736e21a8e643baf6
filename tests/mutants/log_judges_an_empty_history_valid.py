"""Mutant (a wrong judge, issue 66 item 2): the log checker passes a history that appended and read
nothing.

Loaded with ``-p tests.mutants.log_judges_an_empty_history_valid``; see ``JUDGE_MUTANTS`` in
``tests/test_mutants.py``.
"""

from __future__ import annotations

from prism_testkit.stateful.checkers import log

from ._rewrite import rewrite_function_line

rewrite_function_line(
    log,
    "log_anomalies",
    '        _judged_nothing(findings, "appended or read")',
    "        pass  # the bug: nothing judged is a pass",
)
