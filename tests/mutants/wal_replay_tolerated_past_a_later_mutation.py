"""Mutant (a wrong judge, issue 66 item 2): the WAL checker tolerates a re-applied mutation even
when a later mutation of its key was applied in between (the key went back: a tolerated window
applied outside its finding).

Loaded with ``-p tests.mutants.wal_replay_tolerated_past_a_later_mutation``; see
``JUDGE_MUTANTS`` in ``tests/test_mutants.py``.
"""

from __future__ import annotations

import prism_testkit.stateful.checkers.wal as wal_checker

from ._rewrite import rewrite_function_line

rewrite_function_line(
    wal_checker,
    "_same_value_again",
    "    return not any(k == key and o > offset for o, k in between)",
    "    return True  # the bug: every replay is harmless",
)
