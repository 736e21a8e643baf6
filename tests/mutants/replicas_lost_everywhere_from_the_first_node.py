"""Mutant (a wrong judge, issue 66 item 2): what the cluster lost is read from the first node
alone, so a write one node lost and another still holds is called gone from the cluster.

Loaded with ``-p tests.mutants.replicas_lost_everywhere_from_the_first_node``; see
``JUDGE_MUTANTS`` in ``tests/test_mutants.py``.
"""

from __future__ import annotations

from collections.abc import Hashable

from prism_testkit.stateful.checkers.replicas import ReplicaVerdict


def _first_node_only(self: ReplicaVerdict) -> tuple[Hashable, ...]:
    return self.copies[0].lost if self.copies else ()  # the bug: one node judged for all


ReplicaVerdict.lost_everywhere = property(_first_node_only)  # type: ignore[method-assign,assignment]
