"""Mutant: sqlite answers a write before it commits it, committing it at the next turn of the
event loop (or when the next statement comes, whichever is first), yet keeps declaring
``durable=True`` and ``survives_power_loss=True``: a store that acknowledges before it saves.

In one process the commit follows the answer so closely that every other test sees it saved; a
crash right after the acknowledgement (the restart and power-loss suites' rounds) must lose the
last write of every round.

Loaded with ``-p tests.mutants.sqlite_acks_before_commit``.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import uuid
from collections.abc import Callable
from typing import TypeVar

from prism_testkit.backends.sqlite import _Database

T = TypeVar("T")
_call = _Database._call
_close = _Database.close
_generation = itertools.count(1)
_open: dict[int, int] = {}  # id of a database -> the generation of its answered, uncommitted write


def _commit_first(self: _Database, fn: Callable[[sqlite3.Connection], T]) -> T:
    if self._conn is not None and self._conn.in_transaction:
        self._conn.execute("COMMIT")  # the write answered before: saved only now
    return _call(self, fn)


async def _write_answered_first(self: _Database, fn: Callable[[sqlite3.Connection], T]) -> T:
    generation = next(_generation)

    def job(conn: sqlite3.Connection) -> T:
        self._txid = uuid.uuid4().hex
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn)  # no COMMIT: the answer goes out first
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        _open[id(self)] = generation
        return result

    result = await self.run(job)
    asyncio.get_running_loop().create_task(self._commit_later(generation))  # type: ignore[attr-defined]
    return result


async def _commit_later(self: _Database, generation: int) -> None:
    def commit(conn: sqlite3.Connection) -> None:
        if conn.in_transaction and _open.get(id(self)) == generation:
            conn.execute("COMMIT")

    await self.run_raw(commit)  # type: ignore[attr-defined]


async def _run_raw(self: _Database, fn: Callable[[sqlite3.Connection], None]) -> None:
    """Run ``fn`` on the worker thread without committing an answered write first."""
    loop = asyncio.get_running_loop()
    if self._conn is not None and not self._closed:
        await loop.run_in_executor(self._executor, fn, self._conn)


async def _close_saving_first(self: _Database) -> None:
    def commit(conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            conn.execute("COMMIT")  # an orderly close saves what was answered

    await _run_raw(self, commit)
    await _close(self)


_Database._call = _commit_first  # type: ignore[method-assign]
_Database.write = _write_answered_first  # type: ignore[method-assign]
_Database._commit_later = _commit_later  # type: ignore[attr-defined]
_Database.run_raw = _run_raw  # type: ignore[attr-defined]
_Database.close = _close_saving_first  # type: ignore[method-assign]
