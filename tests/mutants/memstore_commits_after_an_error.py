"""Mutant: memstore drops the rollback when a statement of the block raises: what the
transaction staged before the error is applied as if it had committed, and the error propagates.

Loaded with ``-p tests.mutants.memstore_commits_after_an_error``; the isolation suite must
name the rolled-back appends that were read (G1a).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from prism_testkit.backends.memstore import _MemTransaction, _MemTransactions
from prism_testkit.errors import TransactionAborted
from prism_testkit.interfaces import Transaction


@contextlib.asynccontextmanager
async def _no_rollback(self: _MemTransactions) -> AsyncIterator[Transaction]:
    tx = _MemTransaction(self._store)
    try:
        yield tx
    except BaseException:
        with contextlib.suppress(TransactionAborted):
            tx.commit()  # the rollback dropped: the staged writes land anyway
        raise
    tx.commit()


_MemTransactions.transaction = _no_rollback  # type: ignore[method-assign]
