"""Mutant: an append reads the stream's head outside its transaction, so two concurrent appends
at one expected version both commit (the second overwrites the first's positions).

Loaded with ``-p tests.mutants.append_skips_version_check``; the stateful event-sourcing suite
must report acknowledged events as lost (or an overdraft).
"""

from __future__ import annotations

from prism_testkit.interfaces import Transaction
from prism_testkit.patterns.event_sourcing.store import EventStore

_write = EventStore._write


class _BlindReads:
    """The transaction, except that reads bypass it (no optimistic-concurrency check)."""

    def __init__(self, store: EventStore, tx: Transaction) -> None:
        self._store, self._tx = store, tx

    async def get(self, key: str) -> bytes | None:
        return await self._store.kv.get(key)

    def __getattr__(self, name: str) -> object:
        return getattr(self._tx, name)


async def _unchecked_write(self: EventStore, tx: Transaction, *args: object) -> object:
    return await _write(self, _BlindReads(self, tx), *args)  # type: ignore[arg-type]


EventStore._write = _unchecked_write  # type: ignore[assignment, method-assign]
