"""Mutant (a wrong judge): the CDC checker's replica divergence never follows a lost event, so
a failover's tolerated loss is also a red ``diverged`` (issue 64).

Loaded with ``-p tests.mutants.cdc_judges_a_lost_event_twice``.
"""

from __future__ import annotations

import prism_testkit.suites._cdc_checker as cdc_checker

from ._rewrite import rewrite_function_line

rewrite_function_line(
    cdc_checker,
    "_classify_convergence",
    "    echo = {FOLLOWS: tuple(lost_last)} if len(lost_last) == len(apart) else {}",
    "    echo: dict[str, object] = {}  # the bug: the replica short of the lost event is judged again",
)
