"""Mutant (a wrong judge, issue 66 item 2): the WAL checker passes an example that wrote, logged
and applied nothing, so the runner counts it as judged.

Loaded with ``-p tests.mutants.wal_judges_an_empty_history_valid``; see ``JUDGE_MUTANTS`` in
``tests/test_mutants.py``.
"""

from __future__ import annotations

import prism_testkit.stateful.checkers.wal as wal_checker

from ._rewrite import rewrite_function_line

rewrite_function_line(
    wal_checker,
    "check_wal",
    '        findings.add(EMPTY, "nothing was written, logged or applied: the history checks nothing")',
    "        pass  # the bug: nothing judged is a pass",
)
