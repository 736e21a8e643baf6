"""Mutant (a wrong judge): every multicast a lost registration misled is a loss of its own, so
one registration a window excuses is counted once per multicast (issue 64).

Loaded with ``-p tests.mutants.multicast_judges_a_lost_registration_per_multicast``.
"""

from __future__ import annotations

import prism_testkit.suites.test_stateful_multicast_registry as registry

from ._rewrite import rewrite_function_line

rewrite_function_line(
    registry,
    "judge_multicasts",
    '            loss = facts | {"key": lost[0], "value": lost[1]} | ({FOLLOWS: (lost,)} if lost in judged else {})',
    '            loss = facts | {"key": lost[0], "value": lost[1]}  # the bug: each multicast judges it again',
)
