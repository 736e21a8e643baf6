"""Mutant: the migrator reads at most one batch (``migration_batch``) of references per pass,
always the first in key order, instead of planning over every key and moving one batch of
what is due. Once the first batch's keys have moved, no pass sees the keys after them: with
more keys due than one batch, the rest never move.

Loaded with ``-p tests.mutants.tiered_migrator_reads_one_batch_of_references``; the tiered
storage suite's test with more than one batch due must fail.
"""

from __future__ import annotations

from prism_testkit.patterns.tiered_storage import Migrator
from tests.mutants._rewrite import rewrite_line

rewrite_line(
    Migrator,
    "references",
    "for name in sorted(keys):",
    "for name in sorted(keys)[: self.store.config.migration_batch]:  # the bug: the first batch only",
)
