"""Mutant: ``apply_mode="hybrid"`` behaves like async: the write returns after the append
without waiting up to ``sync_timeout`` for its apply (the option has no effect).

Loaded with ``-p tests.mutants.wal_hybrid_never_waits``.
"""

from __future__ import annotations

from prism_testkit.patterns.wal.codec import Mutation
from prism_testkit.patterns.wal.writer import WriteAheadLog


async def _write(self: WriteAheadLog, mutation: Mutation) -> int:
    if self.group_commit is not None:
        offset = await self.group_commit.append(mutation.message(), mutation.mutation_id)
    else:
        offset = await self.log.append(self.config.log, mutation.message())
    if self.config.apply_mode == "sync":  # the bug: hybrid is not waited for at all
        await self.wait_applied(offset, within=None)
    return offset


WriteAheadLog._write = _write  # type: ignore[method-assign]
