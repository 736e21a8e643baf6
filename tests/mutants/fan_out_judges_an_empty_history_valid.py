"""Mutant (a wrong judge, issue 66 item 2): the fan-out checker passes a history that published and
delivered nothing.

Loaded with ``-p tests.mutants.fan_out_judges_an_empty_history_valid``; see ``JUDGE_MUTANTS`` in
``tests/test_mutants.py``.
"""

from __future__ import annotations

from prism_testkit.stateful.checkers import pubsub

from ._rewrite import rewrite_function_line

rewrite_function_line(
    pubsub,
    "fan_out",
    '        _judged_nothing(findings, "published or delivered")',
    "        pass  # the bug: nothing judged is a pass",
)
