"""Mutant (a wrong judge, issue 66 item 2): the CDC checker never judges a transaction of unknown
outcome, even one whose changes partly arrived (Jepsen's must-have-committed rule broken).

Loaded with ``-p tests.mutants.cdc_unknown_transactions_never_judged``; see ``JUDGE_MUTANTS`` in
``tests/test_mutants.py``.
"""

from __future__ import annotations

import prism_testkit.suites._cdc_checker as cdc_checker

from ._rewrite import rewrite_function_line

rewrite_function_line(
    cdc_checker,
    "_classify_committed",
    "        if tag in ledger.maybe and not txids:",
    "        if tag in ledger.maybe:  # the bug: unknown is never lost",
)
