"""Mutant (a wrong judge, issue 66 item 2): one transaction superseded by a snapshot excuses the
losses of every transaction (a tolerated window applied outside its finding).

Loaded with ``-p tests.mutants.cdc_any_superseded_excuses_every_loss``; see ``JUDGE_MUTANTS`` in
``tests/test_mutants.py``.
"""

from __future__ import annotations

import prism_testkit.suites._cdc_checker as cdc_checker

from ._rewrite import rewrite_function_line

rewrite_function_line(
    cdc_checker,
    "_classify_committed",
    "            if want not in got and tag not in ledger.excused:",
    "            if want not in got and not ledger.excused:  # the bug: one excuse for all",
)
