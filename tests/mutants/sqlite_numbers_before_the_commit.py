"""Mutant: SQLite's ``append_numbered`` reads the counter when the append is staged, outside
the commit's write lock, so two transactions staged together take the same number.

Loaded with ``-p tests.mutants.sqlite_numbers_before_the_commit``.
"""

from __future__ import annotations

from prism_testkit.backends.sqlite import SqliteTransaction, _live_value
from prism_testkit.interfaces import Message


async def append_numbered(self: SqliteTransaction, log: str, message: Message, *, counter: str, header: str) -> None:
    current = await self.db.run(lambda conn: _live_value(conn, counter))
    number = int(current or b"0") + 1  # the bug: read now, not under the commit's lock
    await self.put(counter, str(number).encode())
    await self.append(log, message.with_headers(**{header: str(number)}))


SqliteTransaction.append_numbered = append_numbered  # type: ignore[method-assign]
