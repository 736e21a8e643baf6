"""Mutant: xdist is dealt the tests in collection order whatever an earlier run recorded, so a
long test collected last runs alone at the end while the other workers wait (issue 65).

Loaded with ``-p tests.mutants.scheduler_deals_in_collection_order``.
"""

from __future__ import annotations

from prism_testkit.registry import xdist_scheduler
from tests.mutants._rewrite import rewrite_function_line

rewrite_function_line(
    xdist_scheduler,
    "heaviest_first",
    "return sorted(units, key=lambda name: -weight[name])  # stable: ties keep their order",
    "return list(units)",
)
