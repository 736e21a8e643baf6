"""Mutant (a wrong judge, issue 66 item 2): the CDC checker's transaction size check is off by one:
a transaction delivered without its last event passes.

Loaded with ``-p tests.mutants.cdc_partial_transaction_one_short_accepted``; see
``JUDGE_MUTANTS`` in ``tests/test_mutants.py``.
"""

from __future__ import annotations

import prism_testkit.suites._cdc_checker as cdc_checker

from ._rewrite import rewrite_function_line

rewrite_function_line(
    cdc_checker,
    "_classify_partial_transactions",
    (
        "        if len(group) == group[0].total and sorted(e.total_order"
        " for e in group) == list(range(1, len(group) + 1)):"
    ),
    (
        "        if len(group) >= group[0].total - 1 and sorted(e.total_order"
        " for e in group) == list(range(1, len(group) + 1)):"
    ),
)
