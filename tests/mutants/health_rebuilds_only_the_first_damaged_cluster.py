"""Mutant (a one-of bug, issue 66): of a combination's clusters, the health check rebuilds the
first damaged one and stops, so a second damaged cluster (a tiered store's cold tier, a CDC
feed's sink) is handed on to the next test.

Loaded with ``-p tests.mutants.health_rebuilds_only_the_first_damaged_cluster``; see
``HARNESS_MUTANTS`` in ``tests/test_mutants.py``.
"""

from __future__ import annotations

from prism_testkit.stateful import health

from ._rewrite import rewrite_function_line

rewrite_function_line(
    health,
    "ensure_healthy",
    "            rebuilt.append(Rebuilt(backend, left_by, what, test))\n",
    "            rebuilt.append(Rebuilt(backend, left_by, what, test))\n            break  # the bug\n",
)
