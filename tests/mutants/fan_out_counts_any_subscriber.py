"""Mutant: the fan-out (pub/sub) checker counts a message as delivered to a subscriber when any
subscriber got it, so a message one subscriber lost while another got it passes: with a single
subscriber the two judges agree, with two this one hides every per-subscriber loss.

Loaded with ``-p tests.mutants.fan_out_counts_any_subscriber``; the pub/sub suite's proof of its
judge must fail.
"""

from __future__ import annotations

from prism_testkit.stateful.checkers import pubsub
from tests.mutants._rewrite import rewrite_function_line

rewrite_function_line(
    pubsub,
    "_classify_owed",
    "if value not in deliveries[process]:",
    "if not any(value in seen for seen in deliveries.values()):  # the bug: the union of subscribers",
)
