"""Mutant: the row write model no longer looks up the command's journal row before running it,
so a command retried with the id of one that committed (its answer was lost) runs twice.

Loaded with ``-p tests.mutants.cqrs_cdc_commands_not_deduplicated``; the CQRS suite must report
a retried command applied twice.
"""

from __future__ import annotations

import time
import uuid

from prism_testkit.errors import TransactionAborted
from prism_testkit.patterns.cqrs_cdc import Command, Done, R, Rows, RowWriteModel, _dump


async def _execute(
    self: RowWriteModel, decide: Command[R], *, command_id: str | None = None, attempts: int = 3
) -> Done[R]:
    command_id = command_id or uuid.uuid4().hex
    for attempt in range(1, attempts + 1):
        try:
            async with self.transactions.transaction() as tx:  # the bug: no journal lookup
                rows = Rows(tx, self.prefix)
                result = await decide(rows)
                await tx.put(self.journal_key(command_id), _dump({"at": time.time()}))
            return Done(command_id, result, dict(rows.written))
        except TransactionAborted:
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")


RowWriteModel.execute = _execute  # type: ignore[method-assign]
