"""Mutant (a wrong judge, issue 66 item 2): the fan-out checker matches a delivery with a publish
of the same value to any topic, so a message of another topic handed to a subscriber is not
unexpected.

Loaded with ``-p tests.mutants.fan_out_matches_deliveries_on_any_topic``; see ``JUDGE_MUTANTS``
in ``tests/test_mutants.py``.
"""

from __future__ import annotations

from prism_testkit.stateful.checkers import pubsub

from ._rewrite import rewrite_function_line

rewrite_function_line(
    pubsub,
    "_classify_deliveries",
    "            tries = attempts.get((topic, value), [])",
    "            tries = [p for (_, v), group in attempts.items() if v == value for p in group]  # the bug",
)
