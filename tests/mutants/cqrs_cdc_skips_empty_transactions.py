"""Mutant: a CDC-fed read model skips a captured transaction that holds no row change for it
(a command that wrote only its journal row) without moving its position past it, so a
read-your-writes wait for such a command never returns while no later command comes.

Loaded with ``-p tests.mutants.cqrs_cdc_skips_empty_transactions``; the CQRS suite must report a
read model that never reaches a command that changed no row.
"""

from __future__ import annotations

from prism_testkit.patterns.cqrs_cdc import CdcReadModel
from tests.mutants._rewrite import rewrite_line

rewrite_line(
    CdcReadModel,
    "apply",
    "    if position < start // STRIDE:",
    "    if not changes or position < start // STRIDE:  # the bug: nothing to apply, so not tracked",
)
