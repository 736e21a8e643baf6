"""The change feed of the sqlite backend: triggers on the ``kv`` table write every change of a
captured key into ``cdc_changes`` inside the writing transaction, so a change is recorded
exactly when its write commits, and never for a write that rolls back.

Every write runs under SQLite's single write lock (``BEGIN IMMEDIATE``), so ``seq``
(AUTOINCREMENT) follows commit order and the rows of one transaction are contiguous. The
transaction id comes from a function the driver registers on its connection and renews for
every write transaction; ``prism_cdc_now`` is the clock expiry is judged by, so the
before-image of an expired row is "absent", as readers saw it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from itertools import groupby
from typing import Any, Protocol, TypeVar

from prism_testkit.errors import CaptureNotFound
from prism_testkit.interfaces import ChangeSet, KeyChange

from ._changefeed import check_capture, check_label, check_position, check_prefix, check_read, other_prefix
from ._sql import poll, upper_bound

T = TypeVar("T")


class SqliteConnection(Protocol):
    """What the feed needs of the driver's database: jobs run on its one connection's thread.
    Taken as a parameter, so the feed never imports the driver that owns it."""

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...


POLL_INTERVAL = 0.015

_COVERS = "(c.upper IS NULL OR {key} < c.upper) AND {key} >= c.prefix"
_LIVE_OLD = "CASE WHEN OLD.expires_at IS NULL OR OLD.expires_at > prism_cdc_now() THEN OLD.value END"
_RECORD = (
    "INSERT INTO cdc_changes (txid, ts_ms, key, before, after) "
    "VALUES (prism_cdc_txid(), CAST(prism_cdc_now() * 1000 AS INTEGER), {key}, {before}, {after})"
)


def _trigger(event: str, row: str, before: str, after: str) -> str:
    covered = "EXISTS (SELECT 1 FROM cdc_captures c WHERE " + _COVERS.format(key=f"{row}.key") + ")"
    record = _RECORD.format(key=f"{row}.key", before=before, after=after)
    return (
        f"CREATE TRIGGER IF NOT EXISTS kv_cdc_{event.lower()} AFTER {event} ON kv WHEN {covered} BEGIN {record}; END;"
    )


SCHEMA = "\n".join(
    [
        """
CREATE TABLE IF NOT EXISTS cdc_captures (
    name      TEXT PRIMARY KEY,
    prefix    TEXT NOT NULL,
    upper     TEXT,                        -- NULL: every key from prefix on
    confirmed INTEGER NOT NULL DEFAULT 0   -- seq of the last consumed change
);
CREATE TABLE IF NOT EXISTS cdc_changes (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    txid    TEXT NOT NULL,
    ts_ms   INTEGER NOT NULL,
    key     TEXT,                          -- NULL for a mark
    before  BLOB,
    after   BLOB,
    capture TEXT,                          -- the capture a mark is for
    mark    TEXT
);
""",
        _trigger("INSERT", "NEW", "NULL", "NEW.value"),
        _trigger("UPDATE", "NEW", _LIVE_OLD, "NEW.value"),
        # deleting an expired row is no change: the key was already absent for every reader
        _trigger("DELETE", "OLD", _LIVE_OLD, "NULL").replace(
            "WHEN EXISTS", "WHEN (OLD.expires_at IS NULL OR OLD.expires_at > prism_cdc_now()) AND EXISTS"
        ),
    ]
)

# A change row this capture sees: a captured key, or a mark written for it.
_VISIBLE = (
    "ch.seq > c.confirmed AND ((ch.key IS NOT NULL AND "
    + _COVERS.format(key="ch.key")
    + ") OR (ch.key IS NULL AND ch.capture = c.name))"
)
# Rows no capture still needs (confirmed by every capture that sees them), up to a seq.
_COLLECT = (
    "DELETE FROM cdc_changes WHERE seq <= ? AND NOT EXISTS (SELECT 1 FROM cdc_captures c, cdc_changes ch "
    f"WHERE ch.seq = cdc_changes.seq AND {_VISIBLE})"
)
_EVERY_SEQ = (1 << 63) - 1


def _capture(conn: sqlite3.Connection, name: str) -> tuple[str, int]:
    row = conn.execute("SELECT prefix, confirmed FROM cdc_captures WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise CaptureNotFound(name)
    return row[0], int(row[1])


def _change_sets(rows: Sequence[Any]) -> list[ChangeSet]:
    sets = []
    for txid, group in groupby(rows, key=lambda row: row[1]):
        items = list(group)
        changes = tuple(KeyChange(key, _blob(before), _blob(after)) for _, _, _, key, before, after, _ in items if key)
        marks = tuple(mark for *_, mark in items if mark is not None)
        sets.append(ChangeSet(int(items[-1][0]), txid, int(items[-1][2]), changes, marks))
    return sets


def _blob(value: bytes | None) -> bytes | None:
    return None if value is None else bytes(value)


def drop_captures(conn: sqlite3.Connection, prefix: str) -> None:
    """Inside a write transaction: drop every capture named with ``prefix`` and its changes."""
    upper = upper_bound(prefix)
    if upper is None:
        conn.execute("DELETE FROM cdc_captures WHERE name >= ?", (prefix,))
    else:
        conn.execute("DELETE FROM cdc_captures WHERE name >= ? AND name < ?", (prefix, upper))
    conn.execute(_COLLECT, (_EVERY_SEQ,))


def capture_names(conn: sqlite3.Connection, prefix: str) -> list[str]:
    return [name for (name,) in conn.execute("SELECT name FROM cdc_captures ORDER BY name") if name.startswith(prefix)]


class SqliteChangeFeed:
    def __init__(self, db: SqliteConnection) -> None:
        self._db = db

    async def create(self, capture: str, prefix: str) -> None:
        check_capture(capture)
        check_prefix(prefix)

        def job(conn: sqlite3.Connection) -> None:
            row = conn.execute("SELECT prefix FROM cdc_captures WHERE name = ?", (capture,)).fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO cdc_captures (name, prefix, upper, confirmed) "
                    "VALUES (?, ?, ?, COALESCE((SELECT MAX(seq) FROM cdc_changes), 0))",
                    (capture, prefix, upper_bound(prefix)),
                )
            elif row[0] != prefix:
                raise other_prefix(capture, row[0], prefix)

        await self._db.write(job)

    async def read(self, capture: str, *, limit: int = 100, wait: float = 0.0) -> list[ChangeSet]:
        check_capture(capture)
        limit, wait = check_read(limit, wait)

        def job(conn: sqlite3.Connection) -> list[ChangeSet]:
            _capture(conn, capture)
            visible = f"FROM cdc_changes ch, cdc_captures c WHERE c.name = ? AND {_VISIBLE}"
            (cutoff,) = conn.execute(
                f"SELECT MAX(last) FROM (SELECT MAX(ch.seq) AS last {visible} GROUP BY ch.txid ORDER BY last LIMIT ?)",
                (capture, limit),
            ).fetchone()
            if cutoff is None:
                return []
            rows = conn.execute(
                f"SELECT ch.seq, ch.txid, ch.ts_ms, ch.key, ch.before, ch.after, ch.mark {visible} "
                "AND ch.seq <= ? ORDER BY ch.seq",
                (capture, cutoff),
            ).fetchall()
            return _change_sets(rows)

        async def attempt() -> list[ChangeSet]:
            return await self._db.read(job)

        return await poll(attempt, wait, POLL_INTERVAL)

    async def confirm(self, capture: str, position: int) -> None:
        check_capture(capture)
        check_position(position)

        def job(conn: sqlite3.Connection) -> None:
            _capture(conn, capture)
            conn.execute("UPDATE cdc_captures SET confirmed = MAX(confirmed, ?) WHERE name = ?", (position, capture))
            conn.execute(_COLLECT, (position,))

        await self._db.write(job)

    async def mark(self, capture: str, label: str) -> None:
        check_capture(capture)
        check_label(label)

        def job(conn: sqlite3.Connection) -> None:
            _capture(conn, capture)
            conn.execute(
                "INSERT INTO cdc_changes (txid, ts_ms, capture, mark) "
                "VALUES (prism_cdc_txid(), CAST(prism_cdc_now() * 1000 AS INTEGER), ?, ?)",
                (capture, label),
            )

        await self._db.write(job)

    async def drop(self, capture: str) -> None:
        check_capture(capture)

        def job(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM cdc_captures WHERE name = ?", (capture,))
            conn.execute(_COLLECT, (_EVERY_SEQ,))

        await self._db.write(job)

    async def captures(self, prefix: str) -> list[str]:
        check_prefix(prefix)
        return await self._db.read(lambda conn: capture_names(conn, prefix))
