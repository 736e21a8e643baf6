"""Mutant: the isolation checker builds its dependency graph without anti-dependencies (rw
edges), so it sees no read skew and no write skew.

Loaded with ``-p tests.mutants.isolation_checker_ignores_rw``; the isolation suite's proof of
its judge must fail: it misses the write skew of a both-committed history.
"""

from __future__ import annotations

from typing import Any

from prism_testkit.stateful import isolation

_edges = isolation._edges


def _without_rw(
    key: Any,
    order: tuple[Any, ...],
    reads: list[tuple[isolation.Txn, tuple[Any, ...]]],
    writers: dict[tuple[Any, Any], isolation.Txn],
    committed: set[int],
) -> list[isolation.Edge]:
    return [edge for edge in _edges(key, order, reads, writers, committed) if edge.kind != "rw"]


isolation._edges = _without_rw
