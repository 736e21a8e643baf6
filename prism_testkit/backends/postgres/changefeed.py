"""The change feed of the postgres backend: logical decoding through the built-in ``pgoutput``
plugin, one replication slot and one publication per capture.

* The publication covers ``prism.kv`` with a row filter on the capture's key range (PostgreSQL
  15), so the server decodes and sends only the capture's keys. ``prism.kv`` has REPLICA
  IDENTITY FULL, so updates and deletes carry the before-image.
* Reads *peek* the slot (``pg_logical_slot_peek_binary_changes``): nothing is consumed until
  :meth:`confirm` advances the slot (``pg_replication_slot_advance``) to a transaction's end
  LSN. A crash anywhere before that replays the transactions instead of losing them.
* Marks are transactional logical decoding messages (``pg_logical_emit_message``) under a
  prefix naming the capture: they are ordered with the changes around them, and an idle
  capture that confirms one moves its slot past other tables' WAL, so it does not pin WAL.
  A transaction becomes visible only after its commit record is written (and, with
  synchronous replication, acknowledged), so one ordered before a mark may still be invisible
  when the mark's own commit returns: a snapshot chunk read then would miss it and publish
  its row's older value after it. :meth:`mark` returns once every transaction still running
  at that moment has ended (the writes in flight: read-only transactions have no xid).
* Slots live in the server, not in the namespace's tables: ``prism.cdc_captures`` maps each
  capture name to its slot and publication so purge and leftovers find them. The row is
  written before the slot is made, so a crash in between leaves a row (found, and completed
  by the next create) rather than an unnamed slot retaining WAL forever.
* The row is replicated to standbys, the slot is not (PostgreSQL 15): after a failover the
  row names a slot the new primary never had. ``confirmed`` tells the two cases apart: NULL
  until the slot exists (a crash before that: complete it), then the highest position ever
  confirmed, written before the slot moves. A row with a position whose slot is gone, or whose
  slot stands past any position confirmed (made afresh behind the feed's back), is a lost
  capture: :class:`~prism_testkit.errors.CaptureLost`, never a silent restart from now. WAL is
  replayed in order, so a standby that lacks the ``confirmed`` update of a new slot lacks
  every commit after it too: an asynchronous failover cannot hide a loss this way.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import asyncpg

from prism_testkit.errors import CaptureLost, CaptureNotFound
from prism_testkit.interfaces import ChangeSet

from .._changefeed import (
    MARK_PREFIX,
    check_capture,
    check_label,
    check_position,
    check_prefix,
    check_read,
    other_prefix,
)
from .._sql import poll, upper_bound
from .pgoutput import Decoder

T = TypeVar("T")


class PostgresConnections(Protocol):
    """What the feed needs of the driver's pool: a job on one connection, lost connections
    reported as the driver reports them. Taken as a parameter, so the feed never imports the
    driver that owns it."""

    async def run(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T: ...

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None: ...

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]: ...

    async def fetchval(self, sql: str, *args: Any) -> Any: ...

    async def execute(self, sql: str, *args: Any) -> str: ...


POLL_INTERVAL = 0.05  # decoding re-reads WAL from the slot's position: poll gently
SLOT_BUSY_RETRIES = 100  # a slot is held by one session at a time (another peek, a drop)
SLOT_BUSY_PAUSE = 0.02
ROWS_PER_TRANSACTION = 4  # peek row budget per wanted transaction (begin, a change or two, commit)

SCHEMA = """
CREATE TABLE IF NOT EXISTS prism.cdc_captures (
    name        text COLLATE "C" PRIMARY KEY,
    prefix      text COLLATE "C" NOT NULL,
    slot        text NOT NULL UNIQUE,
    publication text NOT NULL UNIQUE,
    confirmed   pg_lsn  -- NULL until the slot exists; then the highest position confirmed
);
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'prism.cdc_captures'::regclass
                   AND attname = 'confirmed') THEN
        ALTER TABLE prism.cdc_captures ADD COLUMN confirmed pg_lsn;  -- made by an older version
    END IF;
    IF (SELECT relreplident FROM pg_class WHERE oid = 'prism.kv'::regclass) <> 'f' THEN
        ALTER TABLE prism.kv REPLICA IDENTITY FULL;  -- before-images of updates and deletes
    END IF;
END $$;
"""

_PEEK = (
    "SELECT data FROM pg_logical_slot_peek_binary_changes($1, NULL, $2, "
    "'proto_version', '1', 'publication_names', $3, 'messages', 'true')"
)


# Transactions running now (in the ProcArray: committed ones too, until visible), as text.
_RUNNING = "SELECT array_agg(x::text) FROM pg_snapshot_xip(pg_current_snapshot()) x"
_STILL_RUNNING = _RUNNING + " WHERE x::text = ANY($1::text[])"
ENDED_POLL_FIRST = 0.001  # a committed transaction leaves the ProcArray within microseconds

_ADVANCE = "SELECT pg_replication_slot_advance($1, '0/0'::pg_lsn + $2::numeric)"

# A capture's row beside its slot, if the server has one.
_STATE = (
    "SELECT c.slot, c.publication, c.confirmed, s.slot_name IS NOT NULL AS has_slot, "
    "s.confirmed_flush_lsn AS slot_confirmed FROM prism.cdc_captures c "
    "LEFT JOIN pg_replication_slots s ON s.slot_name = c.slot WHERE c.name = $1"
)


def _lost(state: asyncpg.Record) -> str | None:
    """Why a capture (a row of :data:`_STATE`) lost its position, or None while it holds it."""
    if state["confirmed"] is None:
        return None  # the slot was never made: a crash inside create, which the next one completes
    if not state["has_slot"]:
        return (
            f"its replication slot {state['slot']} is gone from this server (a promoted standby: "
            f"PostgreSQL 15 keeps logical slots on the primary), last confirmed at {state['confirmed']}"
        )
    if state["slot_confirmed"] > state["confirmed"]:
        return (
            f"its replication slot {state['slot']} starts at {state['slot_confirmed']}, past the last "
            f"confirmed position {state['confirmed']}: it was made again behind the feed's back"
        )
    return None


def object_name(capture: str) -> str:
    """The slot and publication name of ``capture``: slot names allow only [a-z0-9_], 63 long."""
    return "prism_cdc_" + hashlib.sha256(capture.encode()).hexdigest()[:40]


def _mark_prefix(capture: str) -> str:
    return MARK_PREFIX + capture


async def logical_decoding_missing(conn: asyncpg.Connection) -> str | None:
    """Why this server cannot run the change feed, or None when it can."""
    wal_level = await conn.fetchval("SHOW wal_level")
    if wal_level != "logical":
        return f"the server runs with wal_level={wal_level}; logical decoding needs wal_level=logical"
    version = int(await conn.fetchval("SHOW server_version_num"))
    if version < 150000:
        return "publication row filters need PostgreSQL 15 or newer"
    return None


class PostgresChangeFeed:
    def __init__(self, db: PostgresConnections) -> None:
        self._db = db

    async def _busy_retry(self, fn: Callable[[], Awaitable[T]]) -> T:
        for _ in range(SLOT_BUSY_RETRIES):
            try:
                return await fn()
            except asyncpg.exceptions.ObjectInUseError:  # the slot is active in another session
                await asyncio.sleep(SLOT_BUSY_PAUSE)
        return await fn()

    async def _names(self, capture: str) -> tuple[str, str]:
        """The slot and publication of a capture that exists and still holds its position."""
        row = await self._db.fetchrow(_STATE, capture)
        if row is None or row["confirmed"] is None:  # never made, or create has not returned yet
            raise CaptureNotFound(capture)
        if (lost := _lost(row)) is not None:
            raise CaptureLost(capture, lost)
        return row["slot"], row["publication"]

    async def _slot_gone(self, capture: str, error: Exception) -> Exception:
        """What a slot that vanished under a running call means: the capture was dropped
        (CaptureNotFound) or lost (CaptureLost); ``error`` itself if it is back."""
        try:
            await self._names(capture)
        except (CaptureNotFound, CaptureLost) as exc:
            return exc
        return error

    async def create(self, capture: str, prefix: str) -> None:
        check_capture(capture)
        check_prefix(prefix)
        name = object_name(capture)
        existing = await self._db.fetchval(
            "WITH added AS (INSERT INTO prism.cdc_captures (name, prefix, slot, publication) "
            "VALUES ($1, $2, $3, $3) ON CONFLICT (name) DO NOTHING RETURNING prefix) "
            "SELECT prefix FROM prism.cdc_captures WHERE name = $1 AND NOT EXISTS (SELECT 1 FROM added)",
            capture,
            prefix,
            name,
        )
        if existing is not None and existing != prefix:
            raise other_prefix(capture, existing, prefix)
        row = await self._db.fetchrow(_STATE, capture)
        if row is not None and (lost := _lost(row)) is not None:
            raise CaptureLost(capture, lost)  # making the slot now would skip the changes in between
        await self._db.run(lambda conn: _create_publication(conn, name, prefix))
        await self._db.run(lambda conn: _create_slot(conn, name))
        # From here on, a missing slot is a lost one (a concurrent create's update wins the race).
        await self._db.execute(
            "UPDATE prism.cdc_captures c SET confirmed = s.confirmed_flush_lsn FROM pg_replication_slots s "
            "WHERE c.name = $1 AND c.confirmed IS NULL AND s.slot_name = c.slot",
            capture,
        )

    async def read(self, capture: str, *, limit: int = 100, wait: float = 0.0) -> list[ChangeSet]:
        check_capture(capture)
        limit, wait = check_read(limit, wait)
        slot, publication = await self._names(capture)

        async def peek() -> list[ChangeSet]:
            try:
                rows = await self._busy_retry(
                    lambda: self._db.fetch(_PEEK, slot, limit * ROWS_PER_TRANSACTION, publication)
                )
            except asyncpg.exceptions.UndefinedObjectError as exc:  # the slot vanished under the read
                raise await self._slot_gone(capture, exc) from exc
            return Decoder(_mark_prefix(capture)).feed_all(row["data"] for row in rows)[:limit]

        return await poll(peek, wait, POLL_INTERVAL)

    async def confirm(self, capture: str, position: int) -> None:
        check_capture(capture)
        check_position(position)
        slot, _ = await self._names(capture)
        # The row first: a slot standing past the row's position was not moved by this feed.
        await self._db.execute(
            "UPDATE prism.cdc_captures SET confirmed = greatest(confirmed, '0/0'::pg_lsn + $2::numeric) "
            "WHERE name = $1",
            capture,
            position,
        )

        async def advance() -> None:
            confirmed = await self._db.fetchval(
                "SELECT (confirmed_flush_lsn - '0/0')::bigint FROM pg_replication_slots WHERE slot_name = $1", slot
            )
            if confirmed is None:
                raise await self._slot_gone(capture, CaptureNotFound(capture))
            if position > confirmed:  # the slot refuses to move backwards
                try:
                    await self._db.execute(_ADVANCE, slot, position)
                except asyncpg.exceptions.UndefinedObjectError as exc:
                    raise await self._slot_gone(capture, exc) from exc

        await self._busy_retry(advance)

    async def mark(self, capture: str, label: str) -> None:
        check_capture(capture)
        check_label(label)
        await self._names(capture)
        await self._db.execute("SELECT pg_logical_emit_message(true, $1, $2)", _mark_prefix(capture), label)
        await self._until_ended(await self._db.fetchval(_RUNNING))

    async def _until_ended(self, running: list[str] | None) -> None:
        """Wait for the transactions ``running`` to end (commit, visible to every later read,
        or roll back); those still writing delay the mark by what they have left."""
        pause = ENDED_POLL_FIRST
        while running:
            await asyncio.sleep(pause)
            running = await self._db.fetchval(_STILL_RUNNING, running)
            pause = min(pause * 2, POLL_INTERVAL)

    async def drop(self, capture: str) -> None:
        check_capture(capture)
        await self._busy_retry(lambda: self._db.run(lambda conn: drop_capture(conn, capture)))

    async def captures(self, prefix: str) -> list[str]:
        check_prefix(prefix)
        rows = await self._db.fetch("SELECT name FROM prism.cdc_captures ORDER BY name")
        return [row["name"] for row in rows if row["name"].startswith(prefix)]

    async def lose_capture(self, capture: str, *, remade: bool = False) -> None:
        """Fault injection (:class:`~prism_testkit.interfaces.CaptureLoss`): drop the slot and
        keep the row, which is what a promoted PostgreSQL 15 standby holds of the capture;
        ``remade``: then make a slot of the same name, from now."""
        check_capture(capture)
        slot = await self._db.fetchval("SELECT slot FROM prism.cdc_captures WHERE name = $1", capture)
        if slot is None:
            raise CaptureNotFound(capture)
        await self._busy_retry(
            lambda: self._db.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", slot
            )
        )
        if remade:
            await self._db.run(lambda conn: _create_slot(conn, slot))


async def _create_publication(conn: asyncpg.Connection, name: str, prefix: str) -> None:
    if await conn.fetchval("SELECT 1 FROM pg_publication WHERE pubname = $1", name):
        return
    upper = upper_bound(prefix)
    if upper is None:
        where = "(key >= %L)" if prefix else ""
        args = [prefix] if prefix else []
    else:
        where, args = "(key >= %L AND key < %L)", [prefix, upper]
    clause = f" WHERE {where}" if where else ""
    # DDL takes no parameters: format() quotes the identifier and the literals
    sql = await conn.fetchval(
        f"SELECT format('CREATE PUBLICATION %I FOR TABLE prism.kv{clause}', $1::text"
        + "".join(f", ${i + 2}::text" for i in range(len(args)))
        + ")",
        name,
        *args,
    )
    with contextlib.suppress(asyncpg.exceptions.DuplicateObjectError):  # a concurrent create made it
        await conn.execute(sql)


async def _create_slot(conn: asyncpg.Connection, name: str) -> None:
    if await conn.fetchval("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", name):
        return
    # Waits for transactions running now to end: the slot then sees every later commit.
    with contextlib.suppress(asyncpg.exceptions.DuplicateObjectError):
        await conn.execute("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", name)


async def drop_capture(conn: asyncpg.Connection, capture: str) -> None:
    """Drop the slot, then the publication, then the row: the row goes last, so a failure
    halfway leaves something purge and leftovers still find."""
    name = await conn.fetchval("SELECT slot FROM prism.cdc_captures WHERE name = $1", capture)
    if name is None:
        return
    await conn.execute(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", name
    )
    await conn.execute(f'DROP PUBLICATION IF EXISTS "{name}"')  # name is [a-z0-9_] by construction
    await conn.execute("DELETE FROM prism.cdc_captures WHERE name = $1", capture)


async def leftover_captures(conn: asyncpg.Connection, prefix: str) -> list[str]:
    """Captures named with ``prefix``, with the slot and publication each still holds."""
    found: list[str] = []
    rows = await conn.fetch(
        "SELECT c.name, c.slot, s.slot_name IS NOT NULL AS has_slot, p.pubname IS NOT NULL AS has_pub "
        "FROM prism.cdc_captures c LEFT JOIN pg_replication_slots s ON s.slot_name = c.slot "
        "LEFT JOIN pg_publication p ON p.pubname = c.publication ORDER BY c.name"
    )
    for row in rows:
        if row["name"].startswith(prefix):
            found.append(f"capture:{row['name']}")
            if row["has_slot"]:
                found.append(f"slot:{row['slot']}")
            if row["has_pub"]:
                found.append(f"publication:{row['slot']}")
    return found
