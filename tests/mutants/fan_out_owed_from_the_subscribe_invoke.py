"""Mutant (a wrong judge, issue 66 item 2): the fan-out checker owes a subscriber what was
published while its subscribe was still under way (from its invoke, not its completion).

Loaded with ``-p tests.mutants.fan_out_owed_from_the_subscribe_invoke``; see ``JUDGE_MUTANTS``
in ``tests/test_mutants.py``.
"""

from __future__ import annotations

from prism_testkit.stateful.checkers import pubsub

from ._rewrite import rewrite_function_line

rewrite_function_line(
    pubsub,
    "_classify_owed",
    "            if publish.invoke.index < subscribed.completion.index:",
    ("            if publish.invoke.index < subscribed.invoke.index:  # the bug: owed before it was established"),
)
