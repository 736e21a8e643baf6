"""Mutant: the WAL applier counts a mutation waiting for its retry as resolved once the read
position passed it, so a sync write returns its receipt while the mutation is still failing
(and may yet be dead-lettered).

Loaded with ``-p tests.mutants.wal_resolved_ignores_retries``.
"""

from __future__ import annotations

from prism_testkit.patterns.wal.applier import WalApplier


def _is_resolved(self: WalApplier, offset: int) -> bool:
    return self._position is not None and offset < self._position  # the bug: blocked keys not looked at


WalApplier.is_resolved = _is_resolved  # type: ignore[method-assign]
