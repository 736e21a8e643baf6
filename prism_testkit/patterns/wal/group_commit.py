"""Group commit: concurrent writers of one WAL share a log transaction (one fsync)."""

from __future__ import annotations

import asyncio

from prism_testkit.interfaces import Log, Message, Transactions

from .codec import HEADER_MUTATION_ID
from .errors import WalError


class _GroupCommit:
    """Concurrent appends share one log transaction, so one fsync covers many mutations.

    The first writer to arrive flushes; whoever arrives while a flush is in flight waits for the
    next one, which takes everyone waiting (up to ``limit``). A lone writer therefore pays no
    extra latency: a group of one is a plain ``append``. The transaction assigns offsets at
    commit, so after it the group's records are found by mutation id from the end offset read
    before it. Either every mutation of a group is in the log or none is: a failed commit fails
    every writer of the group with the same error.
    """

    def __init__(self, log: Log, transactions: Transactions, name: str, limit: int) -> None:
        self.log, self.transactions, self.name, self.limit = log, transactions, name, limit
        self.groups = 0  # transactions committed with more than one mutation
        self.grouped = 0  # mutations that went through them
        self._waiting: list[tuple[Message, str, asyncio.Future[int]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def append(self, message: Message, mutation_id: str) -> int:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting.append((message, mutation_id, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush())
        return await asyncio.shield(future)  # a cancelled writer must not cancel the group

    async def _flush(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting[: self.limit], self._waiting[self.limit :]
            try:
                offsets = await self._commit(group)
            except BaseException as exc:
                for _, _, future in group:
                    if not future.done():
                        future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for (_, _, future), offset in zip(group, offsets, strict=True):
                if not future.done():
                    future.set_result(offset)

    async def _commit(self, group: list[tuple[Message, str, asyncio.Future[int]]]) -> list[int]:
        if len(group) == 1:
            return [await self.log.append(self.name, group[0][0])]
        start = await self.log.end_offset(self.name)
        async with self.transactions.transaction() as tx:
            for message, _, _ in group:
                await tx.append(self.name, message)
        self.groups += 1
        self.grouped += len(group)
        wanted = {mutation_id: index for index, (_, mutation_id, _) in enumerate(group)}
        offsets: list[int | None] = [None] * len(group)
        missing, offset = len(group), start
        while missing:
            records = await self.log.read(self.name, offset, limit=max(100, len(group)))
            if not records:
                raise WalError(f"committed group of {len(group)} not found in log {self.name!r} from offset {start}")
            for record in records:
                index = wanted.get(record.message.headers.get(HEADER_MUTATION_ID, ""))
                if index is not None and offsets[index] is None:
                    offsets[index] = record.offset
                    missing -= 1
            offset = records[-1].offset + 1
        return [o for o in offsets if o is not None]
