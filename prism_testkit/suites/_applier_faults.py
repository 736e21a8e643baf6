"""A WAL applier's process dying mid-batch, as the WAL suites simulate it: the target (its
key-value and its transactions) becomes unreachable right before the ``after``-th value write,
so the dead applier writes nothing more (an open transaction rolls back)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prism_testkit import KeyValue, Log, Transaction, Transactions
from prism_testkit.faults.interpose import Call, Interposed

from ._doubles import Killed


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


class DyingTarget(Interposed[KeyValue]):
    """The target as the applier's process sees it; ``transactions`` dies along with it."""

    def __init__(self, inner: KeyValue, fuse: ValueFuse, transactions: Transactions | None = None) -> None:
        def writes(call: Call) -> None:
            fuse.write(str(call.arguments["key"]))

        super().__init__(
            inner, surface=KeyValue, before_every=lambda call: fuse.check(), before={"put": writes, "delete": writes}
        )
        self.fuse = fuse
        self.transactions = None if transactions is None else _DyingTransactions(transactions, fuse)


class _DyingTransaction(Interposed[Transaction]):
    def __init__(self, inner: Transaction, fuse: ValueFuse) -> None:
        def writes(call: Call) -> None:
            fuse.write(str(call.arguments["key"]))

        super().__init__(
            inner, surface=Transaction, before={"get": lambda call: fuse.check(), "put": writes, "delete": writes}
        )

    # Not a hook: the applier must never get here, whatever the inner transaction offers.
    async def append(self, log: str, message: object) -> None:
        raise AssertionError("a WAL applier never appends inside a target transaction")


class _DyingTransactions:
    """Not an :class:`Interposed`: its one method hands out a wrapped transaction, not the inner one."""

    def __init__(self, inner: Transactions, fuse: ValueFuse) -> None:
        self.inner, self.fuse = inner, fuse

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_DyingTransaction]:
        self.fuse.check()
        async with self.inner.transaction() as tx:
            yield _DyingTransaction(tx, self.fuse)


class DiesAtCheckpoint(Interposed[Log]):
    """The applier's log as a process sees it that dies after its target writes committed but
    before its checkpoint is: every read works, ``commit`` kills it."""

    def __init__(self, inner: Log) -> None:
        def dies(call: Call) -> None:
            raise Killed

        # No surface: every attribute of the driver's log stays reachable, as the pattern found it.
        super().__init__(inner, before={"commit": dies})


__all__ = ["DiesAtCheckpoint", "DyingTarget", "ValueFuse"]
