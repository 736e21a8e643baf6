"""Mutant (a wrong judge, issue 66 item 2): the CDC checker looks for a transaction's changes among
every delivered event, so a delete another transaction made of the same key covers a lost one.

Loaded with ``-p tests.mutants.cdc_lost_over_the_union_of_transactions``; see ``JUDGE_MUTANTS``
in ``tests/test_mutants.py``.
"""

from __future__ import annotations

import prism_testkit.suites._cdc_checker as cdc_checker

from ._rewrite import rewrite_function_line

rewrite_function_line(
    cdc_checker,
    "_classify_committed",
    "        got = {(e.key, e.after) for txid in txids for e in index.by_txid[txid]}",
    "        got = {(e.key, e.after) for e in index.streamed}  # the bug: the union of transactions",
)
