"""A WAL applier's process dying mid-batch, as the WAL suites simulate it: the target (its
key-value and its transactions) becomes unreachable right before the ``after``-th value write,
so the dead applier writes nothing more (an open transaction rolls back)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prism_testkit import KeyValue, Log, Transaction, Transactions

from ._relay_faults import DyingKeyValue, Killed


class ValueFuse:
    """Counts value writes (not applied-offset guards) and dies at the ``after``-th."""

    def __init__(self, after: int, guard_prefix: str) -> None:
        self.after, self.guard_prefix, self.writes, self.dead = after, guard_prefix, 0, False

    def check(self) -> None:
        if self.dead:
            raise Killed

    def write(self, key: str) -> None:
        self.check()
        if key.startswith(self.guard_prefix):
            return
        if self.writes == self.after:
            self.dead = True
            raise Killed
        self.writes += 1


class DyingTarget(DyingKeyValue):
    """The target as the applier's process sees it; ``transactions`` dies along with it."""

    def __init__(self, inner: KeyValue, fuse: ValueFuse, transactions: Transactions | None = None) -> None:
        super().__init__(inner, fuse)
        self.fuse = fuse
        self.transactions = None if transactions is None else _DyingTransactions(transactions, fuse)

    async def put(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        self.fuse.write(key)
        await self.inner.put(key, value, ttl=ttl)

    async def delete(self, key: str) -> bool:
        self.fuse.write(key)
        return await self.inner.delete(key)


class _DyingTransaction:
    def __init__(self, inner: Transaction, fuse: ValueFuse) -> None:
        self.inner, self.fuse = inner, fuse

    async def get(self, key: str) -> bytes | None:
        self.fuse.check()
        return await self.inner.get(key)

    async def put(self, key: str, value: bytes) -> None:
        self.fuse.write(key)
        await self.inner.put(key, value)

    async def delete(self, key: str) -> None:
        self.fuse.write(key)
        await self.inner.delete(key)

    async def append(self, log: str, message: object) -> None:
        raise AssertionError("a WAL applier never appends inside a target transaction")


class _DyingTransactions:
    def __init__(self, inner: Transactions, fuse: ValueFuse) -> None:
        self.inner, self.fuse = inner, fuse

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_DyingTransaction]:
        self.fuse.check()
        async with self.inner.transaction() as tx:
            yield _DyingTransaction(tx, self.fuse)


class DiesAtCheckpoint:
    """The applier's log as a process sees it that dies after its target writes committed but
    before its checkpoint is: every read works, ``commit`` kills it."""

    def __init__(self, inner: Log) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def commit(self, log: str, group: str, offset: int) -> None:
        raise Killed


__all__ = ["DiesAtCheckpoint", "DyingTarget", "Killed", "ValueFuse"]
