"""Mutant: CQRS counts a command in ``metrics.commands`` before the write model decides it, so a
refused command (nothing appended) is counted as executed.

Loaded with ``-p tests.mutants.cqrs_counts_refused_commands``; the CQRS suite must report refused
commands counted.
"""

from __future__ import annotations

from prism_testkit.patterns.cqrs import Cqrs, Decide, Written


async def _execute(self: Cqrs, stream: str, decide: Decide, *, attempts: int = 3) -> Written:
    self.metrics.commands += 1  # the bug: counted before the command is accepted
    loaded = await self.write.execute(stream, decide, attempts=attempts)
    position = await self.write.store.notifications_end()
    return Written(stream, loaded.version, loaded.state, position)


Cqrs.execute = _execute  # type: ignore[method-assign]
