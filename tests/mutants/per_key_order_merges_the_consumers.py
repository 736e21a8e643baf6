"""Mutant (a wrong judge, issue 66 item 2): the per-key order checker judges the union of every
consumer's first deliveries as one consumer's, so a consumer that got a key out of order after
another got it in order passes.

Loaded with ``-p tests.mutants.per_key_order_merges_the_consumers``; see ``JUDGE_MUTANTS`` in
``tests/test_mutants.py``.
"""

from __future__ import annotations

from prism_testkit.stateful.checkers import keyvalue

from ._rewrite import rewrite_function_line

rewrite_function_line(
    keyvalue,
    "per_key_order",
    "                received[(pair.process, session[pair.process])].setdefault(value, pair)",
    "                received[(None, 0)].setdefault(value, pair)  # the bug: one judge for every consumer",
)
