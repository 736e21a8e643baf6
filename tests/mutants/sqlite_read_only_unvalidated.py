"""Mutant: SQLite commits a read-only transaction without checking its reads (as it did before
issue 68): each read is its own statement, so a writer committing between two of them shows the
reader half of that writer (read skew, G-single).

Loaded with ``-p tests.mutants.sqlite_read_only_unvalidated``; the isolation suite must name
read skew (G-single).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator

from prism_testkit.backends.sqlite import SqliteTransaction, SqliteTransactions
from prism_testkit.errors import TransactionAborted


@contextlib.asynccontextmanager
async def _unvalidated(self: SqliteTransactions) -> AsyncIterator[SqliteTransaction]:
    tx = SqliteTransaction(self._db)
    try:
        yield tx
    except BaseException:
        tx.finished = True
        raise
    tx.finished = True
    if not tx.ops:
        return  # the bug: a read-only transaction's reads are never checked
    try:
        await self._db.write(tx.apply)
    except sqlite3.Error as exc:
        raise TransactionAborted(f"sqlite transaction could not commit: {exc}") from exc


SqliteTransactions.transaction = _unvalidated  # type: ignore[method-assign]
