"""Mutant: the fan-out (pub/sub) checker judges losses of the first subscriber read to the end
only and takes its verdict for all, so a message another subscriber lost passes.

Loaded with ``-p tests.mutants.fan_out_judges_the_first_subscriber``; the pub/sub suite's proof
of its judge must fail.
"""

from __future__ import annotations

from prism_testkit.stateful.checkers import pubsub
from tests.mutants._rewrite import rewrite_function_line

rewrite_function_line(
    pubsub,
    "_classify_owed",
    "for process, drain in final.items():",
    "for process, drain in list(final.items())[:1]:  # the bug: one subscriber judged for all",
)
