"""Mutant (a wrong judge, issue 66 item 2): the replica verdict is valid when the last node's
copy is intact, whatever the others hold.

Loaded with ``-p tests.mutants.replicas_valid_judges_the_last_node``; see ``JUDGE_MUTANTS`` in
``tests/test_mutants.py``.
"""

from __future__ import annotations

from prism_testkit.stateful.checkers.replicas import ReplicaVerdict


def _last_node_only(self: ReplicaVerdict) -> bool:
    return all(copy.intact for copy in self.copies[-1:])  # the bug: one node judged for all


ReplicaVerdict.valid = property(_last_node_only)  # type: ignore[method-assign,assignment]
