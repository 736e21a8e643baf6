"""Mutant (a wrong judge): the event-sourcing read model is compared with the replay alone, so
events the projection read before the store lost them (tolerated in a failover) are a red
``read-model-diverged`` too (issue 64).

Loaded with ``-p tests.mutants.es_judges_a_projected_lost_event_twice``.
"""

from __future__ import annotations

import prism_testkit.suites._bank as bank

from ._rewrite import rewrite_function_line

rewrite_function_line(
    bank,
    "read_model_divergence",
    "    applied = applied_before_lost(view, total, replayed, lost) or ()",
    "    applied: tuple[str, ...] = ()  # the bug: what the store lost is not looked for",
)
