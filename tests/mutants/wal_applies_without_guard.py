"""Mutant: the WAL applier ignores the per-key applied offset, so a replay from the checkpoint
applies again what a crashed applier had already applied.

Loaded with ``-p tests.mutants.wal_applies_without_guard``; the stateful WAL suite must report
the re-applied mutations as doubled.
"""

from __future__ import annotations

from prism_testkit.patterns.wal import applier


def _never_applied(guard: bytes | None, offset: int) -> bool:
    return False  # the bug: every replayed mutation is written again


applier._applied = _never_applied
