"""Mutant (a wrong judge, issue 66 item 2): the CDC checker passes an example that wrote and
delivered nothing, so the runner counts it as judged.

Loaded with ``-p tests.mutants.cdc_judges_an_empty_history_valid``; see ``JUDGE_MUTANTS`` in
``tests/test_mutants.py``.
"""

from __future__ import annotations

import prism_testkit.suites._cdc_checker as cdc_checker

from ._rewrite import rewrite_function_line

rewrite_function_line(
    cdc_checker,
    "check",
    '        findings.add(EMPTY, "nothing was written or delivered: the history checks nothing")',
    "        pass  # the bug: nothing judged is a pass",
)
