"""Mutant: ``OutboxTransaction.publish`` appends the event to the outbox log in a transaction of
its own, committed at once, instead of the business transaction: an event whose business
transaction then rolls back (or aborts) stays in the outbox and is published.

Loaded with ``-p tests.mutants.outbox_event_outside_transaction`` (memstore: a store that takes
one writer at a time, as SQLite does, would wait on the open business transaction instead).
"""

from __future__ import annotations

from prism_testkit.interfaces import Message
from prism_testkit.patterns.outbox.writer import OutboxTransaction


class _AppendsApart:
    """The business transaction, whose log appends go to a transaction of their own."""

    def __init__(self, otx: OutboxTransaction, inner: object) -> None:
        self._otx, self._inner = otx, inner

    def __getattr__(self, name: str) -> object:
        if name == "append_numbered":  # the store's numbering would keep the event in the business tx
            raise AttributeError(name)
        return getattr(self._inner, name)

    async def append(self, log: str, message: Message) -> None:
        async with self._otx._outbox.transactions.transaction() as apart:  # the bug: not the business tx
            await apart.append(log, message)


_publish = OutboxTransaction.publish


async def publish(self: OutboxTransaction, *args: object, **kwargs: object) -> str:
    inner = self._tx
    self._tx = _AppendsApart(self, inner)  # type: ignore[assignment]
    try:
        return await _publish(self, *args, **kwargs)  # type: ignore[arg-type]
    finally:
        self._tx = inner


OutboxTransaction.publish = publish  # type: ignore[method-assign]
