"""Mutant: PostgreSQL commits a read-only transaction without checking its reads (as it did
before issue 68): each read is its own statement, so a writer committing between two of them
shows the reader half of that writer (read skew, G-single).

Loaded with ``-p tests.mutants.postgres_read_only_unvalidated``; the transactions contract
must name the read skew.
"""

from __future__ import annotations

from prism_testkit.backends.postgres.driver import PostgresTransaction, PostgresTransactions


async def _unvalidated(tx: PostgresTransaction) -> None:
    return None  # the bug: a read-only transaction's reads are never checked


PostgresTransactions._validate_reads = staticmethod(_unvalidated)  # type: ignore[method-assign]
