"""Mutant (a wrong judge, issue 66 item 2): the log checker's nonmonotonic-send is off by one: one
process given the same offset twice passes.

Loaded with ``-p tests.mutants.log_send_order_allows_a_repeated_offset``; see ``JUDGE_MUTANTS``
in ``tests/test_mutants.py``.
"""

from __future__ import annotations

from prism_testkit.stateful.checkers import log

from ._rewrite import rewrite_function_line

rewrite_function_line(
    log,
    "_send_order_anomalies",
    "            and pair.offset <= previous.offset",
    "            and pair.offset < previous.offset  # the bug: an equal offset passes",
)
