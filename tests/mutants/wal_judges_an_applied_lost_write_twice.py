"""Mutant (a wrong judge): the WAL checker calls the target's copy of a write the log lost a
phantom of its own, so a failover's tolerated loss is also a red (issue 64).

Loaded with ``-p tests.mutants.wal_judges_an_applied_lost_write_twice``.
"""

from __future__ import annotations

import prism_testkit.stateful.checkers.wal as wal_checker

from ._rewrite import rewrite_function_line

rewrite_function_line(
    wal_checker,
    "_classify_final_values",
    "                **_echo(index.applied_then_lost(key, value)),",
    "                # the bug: the target holding the lost write is judged again",
)
