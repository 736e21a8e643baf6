"""Mutant: the WAL applier dead-letters a mutation without recording it as resolved in the
target's applied offset, so a replay from an older checkpoint retries and dead-letters it again.

Loaded with ``-p tests.mutants.wal_dead_letter_without_guard``.
"""

from __future__ import annotations

from prism_testkit.patterns.wal.applier import WalApplier, _Pending
from prism_testkit.patterns.wal.codec import HEADER_ATTEMPTS, HEADER_ERROR, HEADER_SOURCE_OFFSET, Mutation


async def _dead_letter_unguarded(self: WalApplier, pending: _Pending, mutation: Mutation | None, error: str) -> None:
    message = pending.record.message.with_headers(
        **{HEADER_ERROR: error, HEADER_ATTEMPTS: str(pending.attempts), HEADER_SOURCE_OFFSET: str(pending.offset)}
    )
    await self.log.append(self.config.dead_letter, message)  # the bug: no applied offset written
    self.metrics.dead_lettered += 1
    self._dead[pending.offset] = (mutation.key if mutation else "", error)


WalApplier._dead_letter = _dead_letter_unguarded  # type: ignore[method-assign]
