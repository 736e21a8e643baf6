"""Mutant: a CDC-fed read model takes a captured transaction *at* its position for a redelivery
(``<=`` for ``<``), so the very next transaction after the last one applied is skipped when its
change position directly follows.

Loaded with ``-p tests.mutants.cqrs_cdc_skips_the_next_transaction``; the CQRS suite must report
the read model as diverged from the write model.
"""

from __future__ import annotations

from prism_testkit.patterns.cqrs_cdc import CdcReadModel
from tests.mutants._rewrite import rewrite_line

rewrite_line(
    CdcReadModel,
    "apply",
    "    if position < start // STRIDE:",
    "    if position <= start // STRIDE:  # the bug: <= for <",
)
