"""Mutant (a wrong judge): every read of a lost value is a loss of its own, so one loss a window
excuses is counted once per read of it (issue 64).

Loaded with ``-p tests.mutants.tiered_judges_a_loss_read_twice``.
"""

from __future__ import annotations

import prism_testkit.suites._tiered as tiered

from ._rewrite import rewrite_function_line

rewrite_function_line(
    tiered,
    "read_again",
    "    return {FOLLOWS: ((key, None),)} if key in last_lost and last_lost[key] == got else {}",
    "    return {}  # the bug: the same loss read again is judged again",
)
