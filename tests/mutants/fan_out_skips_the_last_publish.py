"""Mutant (a wrong judge, issue 66 item 2): the fan-out checker owes a subscriber every
acknowledged publish but the last.

Loaded with ``-p tests.mutants.fan_out_skips_the_last_publish``; see ``JUDGE_MUTANTS`` in
``tests/test_mutants.py``.
"""

from __future__ import annotations

from prism_testkit.stateful.checkers import pubsub

from ._rewrite import rewrite_function_line

rewrite_function_line(
    pubsub,
    "_classify_owed",
    "        for publish in acked[topic]:",
    "        for publish in acked[topic][:-1]:  # the bug: the last publish is never owed",
)
