"""Mutant (a wrong judge): a writer's next append given the offset of its lost one is a
``nonmonotonic-send`` of its own, so a failover's tolerated loss is also a red (issue 64).

Loaded with ``-p tests.mutants.log_judges_a_reused_send_offset_twice``.
"""

from __future__ import annotations

from prism_testkit.stateful.checkers import log

from ._rewrite import rewrite_function_line

rewrite_function_line(
    log,
    "_send_order_anomalies",
    "            gone = previous.ok and previous.invoke.value not in logs[pair.key].seen",
    "            gone = False  # the bug: the offset's loss is judged again",
)
