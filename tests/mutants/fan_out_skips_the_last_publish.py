"""Mutant (a wrong judge, issue 66 item 2): the fan-out checker owes a subscriber every
acknowledged publish but the last.

Loaded with ``-p tests.mutants.fan_out_skips_the_last_publish``; see ``JUDGE_MUTANTS`` in
``tests/test_mutants.py``.
"""

from __future__ import annotations

import prism_testkit.stateful.checkers as checkers

from ._rewrite import rewrite_function_line

rewrite_function_line(
    checkers,
    "fan_out",
    "        for publish in acked[topic]:",
    "        for publish in acked[topic][:-1]:  # the bug: the last publish is never owed",
)
