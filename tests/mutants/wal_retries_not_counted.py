"""Mutant: the WAL applier does not count failed attempts it will retry in ``metrics.retries``.

Loaded with ``-p tests.mutants.wal_retries_not_counted``.
"""

from __future__ import annotations

from collections import deque

from prism_testkit.patterns.wal.applier import WalApplier, _Pending
from prism_testkit.patterns.wal.codec import Mutation


async def _reject(
    self: WalApplier, pending: _Pending, mutation: Mutation, error: str, requeue: deque[_Pending] | None
) -> None:
    pending.attempts += 1
    pending.error = error
    if pending.attempts >= self.config.max_attempts:
        await self._dead_letter(pending, mutation, error)
        return
    # the bug: self.metrics.retries is not incremented
    pending.due = self.clock() + self.config.backoff(pending.attempts)
    queue = requeue if requeue is not None else self._blocked.setdefault(mutation.key, deque())
    queue.appendleft(pending)
    self._blocked[mutation.key] = queue


WalApplier._reject = _reject  # type: ignore[method-assign]
