"""Mutant: over a store without ``transactions.numbering`` the outbox reads an aggregate's
sequence in the transaction but never writes the bumped value back, so every event of the
aggregate gets number 1.

Loaded with ``-p tests.mutants.outbox_sequence_not_bumped``.
"""

from __future__ import annotations

from typing import Any

from prism_testkit.interfaces import Message, Transaction
from prism_testkit.patterns.outbox.writer import Outbox, OutboxTransaction


class _DropsSequenceWrites:
    def __init__(self, inner: Transaction, prefix: str) -> None:
        self._inner, self._prefix = inner, prefix

    async def get(self, key: str) -> bytes | None:
        return await self._inner.get(key)

    async def put(self, key: str, value: bytes) -> None:
        if not key.startswith(self._prefix):  # the bug: the bumped sequence is never written
            await self._inner.put(key, value)

    async def delete(self, key: str) -> None:
        await self._inner.delete(key)

    async def append(self, log: str, message: Message) -> None:
        await self._inner.append(log, message)


_original_init = OutboxTransaction.__init__


def __init__(self: OutboxTransaction, outbox: Outbox, tx: Transaction, *args: Any, **kwargs: Any) -> None:
    if not hasattr(tx, "append_numbered"):  # only the read path has the bug
        tx = _DropsSequenceWrites(tx, outbox.config.sequence_key(""))
    _original_init(self, outbox, tx, *args, **kwargs)


OutboxTransaction.__init__ = __init__  # type: ignore[method-assign]
