"""Mutant: the WAL applier's checkpoint follows its read position and forgets the mutations
waiting for a retry, so a process that dies (or is replaced) while a retry is pending leaves
them behind the committed checkpoint, never applied.

Loaded with ``-p tests.mutants.wal_checkpoint_passes_pending_retry``.
"""

from __future__ import annotations

from prism_testkit.patterns.wal.applier import WalApplier


def _resolved(self: WalApplier) -> int | None:
    return self._position  # the bug: the heads of the blocked keys are not looked at


WalApplier.resolved = property(_resolved)  # type: ignore[assignment,method-assign]
