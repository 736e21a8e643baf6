"""Mutant (a wrong judge, issue 66 item 2): the fan-out checker's subscription boundary is off by
one: the publish invoked right after the subscription was established is not owed.

Loaded with ``-p tests.mutants.fan_out_first_owed_publish_skipped``; see ``JUDGE_MUTANTS`` in
``tests/test_mutants.py``.
"""

from __future__ import annotations

from prism_testkit.stateful.checkers import pubsub

from ._rewrite import rewrite_function_line

rewrite_function_line(
    pubsub,
    "_classify_owed",
    "            if publish.invoke.index < subscribed.completion.index:",
    "            if publish.invoke.index <= subscribed.completion.index + 1:  # the bug: off by one",
)
