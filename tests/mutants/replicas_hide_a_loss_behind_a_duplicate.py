"""Mutant (a wrong judge, issue 66 item 2): the replica checker looks for a node's losses only when
the node holds fewer messages than were acknowledged, so a duplicate covers a loss.

Loaded with ``-p tests.mutants.replicas_hide_a_loss_behind_a_duplicate``; see ``JUDGE_MUTANTS``
in ``tests/test_mutants.py``.
"""

from __future__ import annotations

import prism_testkit.stateful.checkers.replicas as replicas

from ._rewrite import rewrite_function_line

rewrite_function_line(
    replicas,
    "check_replicas",
    "        missing = [i for i, value in enumerate(order) if value not in held]",
    (
        "        missing = [i for i, v in enumerate(order) if v not in held]"
        " if sum(held.values()) < len(order) else []  # the bug"
    ),
)
