"""Mutant (a wrong judge, issue 66 item 2): the per-key order checker never judges a consumer's
last delivery.

Loaded with ``-p tests.mutants.per_key_order_skips_the_last_delivery``; see ``JUDGE_MUTANTS`` in
``tests/test_mutants.py``.
"""

from __future__ import annotations

from prism_testkit.stateful.checkers import keyvalue

from ._rewrite import rewrite_function_line

rewrite_function_line(
    keyvalue,
    "per_key_order",
    "        for value, read in deliveries.items():",
    "        for value, read in list(deliveries.items())[:-1]:  # the bug: the last one is never judged",
)
