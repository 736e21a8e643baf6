"""A durable server backend over PostgreSQL (:mod:`asyncpg`, one connection pool per driver).

Implements key-value (with TTL, scan and compare-and-set), a durable queue, an append-only log
with group offsets, and transactions across keys and logs. Everything lives in four tables of
the ``prism`` schema, created on connect (serialised by an advisory lock, so xdist workers
connecting to one server at the same time do not race on the catalog).

Design choices worth knowing:

* Expiry and visibility use the server clock (``clock_timestamp()``), so clients on different
  hosts agree on when a key expires or a pending message becomes visible again.
* Log offsets follow commit order. An append takes a per-log, transaction-scoped advisory lock
  before computing ``max(offset) + 1`` and holds it until commit, so offset ``n + 1`` cannot be
  assigned before ``n`` has committed and become visible: a reader polling by offset never skips
  a row that commits later with a lower offset (the outbox pitfall of reading by sequence id).
* Transactions stage their writes in memory and apply them when the block ends in one
  statement, a call of the PL/pgSQL function ``prism.apply_tx`` (one round trip; offsets assigned
  there, in commit order), with optimistic validation: every
  key read is re-checked under a row lock at commit, and a changed one aborts the transaction
  (TransactionAborted), so read-modify-write never loses an update. Holding a real transaction
  open for the whole block would pin a pooled connection and the log locks for as long as user
  code awaits, and REPEATABLE READ would see stale log ends; staging keeps locks short and
  takes them in one global order (logs, then keys, both sorted), so our transactions do not
  deadlock each other.
* Waiting receives and reads poll with short sleeps; no LISTEN/NOTIFY connection to keep alive
  across server restarts.
* Message headers and key go into one JSON text column, which escapes anything PostgreSQL text
  could not hold (NUL); names (keys, queues, logs, groups) are text and must not contain NUL.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Self, TypeVar

import asyncpg

from prism_testkit.capabilities import Capability
from prism_testkit.driver import Driver
from prism_testkit.errors import (
    ConnectionLost,
    DeliveryNotFound,
    PayloadTooLarge,
    ProvisioningError,
    TransactionAborted,
)
from prism_testkit.interfaces import Message, QueueDelivery, Record
from prism_testkit.provision.base import Endpoint
from prism_testkit.redaction import redact

from .._common import Numbering, as_bytes, bad_counter, check_count, check_positive, check_wait, freeze_message
from .._sql import SCAN_BATCH, SqlDialect, poll
from . import MAX_PAYLOAD
from .changefeed import SCHEMA as CHANGEFEED_SCHEMA
from .changefeed import PostgresChangeFeed, leftover_captures, logical_decoding_missing

T = TypeVar("T")

POLL_INTERVAL = 0.02  # seconds between polls while a receive / read waits for data
POOL_MIN, POOL_MAX = 1, 10
CLOSE_TIMEOUT = 5.0  # seconds a pool may take to close before its connections are dropped


# Advisory locks use the two-int form: (our class id, object id) never collides with the
# one-bigint locks other applications of the same database take.
LOCK_CLASS_DDL = 0x70726900  # "pri\0": schema creation
LOCK_CLASS_LOG = 0x70726901  # "pri\1": appends to one log, keyed by hashtext(log)


# COLLATE "C" compares by UTF-8 bytes, i.e. by code point: prefix ranges below are exact and
# index-friendly, and scan order does not depend on the server's locale.
SCHEMA = """
CREATE SCHEMA IF NOT EXISTS prism;
CREATE TABLE IF NOT EXISTS prism.kv (
    key        text COLLATE "C" PRIMARY KEY,
    value      bytea NOT NULL,
    expires_at timestamptz
);
CREATE TABLE IF NOT EXISTS prism.queue_messages (
    id           bigserial PRIMARY KEY,  -- FIFO order; never reused
    queue        text COLLATE "C" NOT NULL,
    payload      bytea NOT NULL,
    meta         text NOT NULL,          -- JSON: headers and key
    available_at timestamptz NOT NULL,
    attempt      integer NOT NULL DEFAULT 0,
    delivery_id  text
);
CREATE INDEX IF NOT EXISTS queue_messages_by_queue ON prism.queue_messages (queue, id);
CREATE INDEX IF NOT EXISTS queue_messages_by_delivery ON prism.queue_messages (delivery_id)
    WHERE delivery_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS prism.log_records (
    log      text COLLATE "C" NOT NULL,
    "offset" bigint NOT NULL,
    payload  bytea NOT NULL,
    meta     text NOT NULL,
    PRIMARY KEY (log, "offset")
);
CREATE TABLE IF NOT EXISTS prism.log_heads (
    log  text COLLATE "C" PRIMARY KEY,
    next bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS prism.log_groups (
    log      text COLLATE "C" NOT NULL,
    grp      text COLLATE "C" NOT NULL,
    "offset" bigint NOT NULL,
    PRIMARY KEY (log, grp)
);
"""

# A transaction's whole commit in one statement, so one round trip: locks (logs, then keys, each
# in the order given: sorted), the check of every read, the writes and the appends. A changed read
# raises CONFLICT_SQLSTATE with the key as its message, which rolls back the placeholders too.
CONFLICT_SQLSTATE = "PR001"
BAD_COUNTER_SQLSTATE = "PR002"  # a numbering counter holds no decimal number
APPLY_FUNCTION = f"""
CREATE OR REPLACE FUNCTION prism.apply_tx(
    lock_logs text[], lock_keys text[],
    read_keys text[], read_values bytea[],   -- the committed value first read; NULL: absent
    put_keys text[], put_values bytea[],     -- the staged value; NULL: delete
    logs text[], payloads bytea[], metas text[],
    counters text[], headers text[]          -- per append: numbered from this counter key, or NULL
) RETURNS void LANGUAGE plpgsql AS $apply$
DECLARE
    k text;
    i int;
    n bigint;
    cur bytea;
    live boolean;
BEGIN
    FOREACH k IN ARRAY lock_logs LOOP
        PERFORM pg_advisory_xact_lock({LOCK_CLASS_LOG}, hashtext(k));
    END LOOP;
    FOREACH k IN ARRAY lock_keys LOOP
        LOOP  -- an absent key gets a never-live placeholder row to lock
            INSERT INTO prism.kv (key, value, expires_at) VALUES (k, ''::bytea, '-infinity')
                ON CONFLICT (key) DO NOTHING;
            SELECT value, (expires_at IS NULL OR expires_at > clock_timestamp()) INTO cur, live
                FROM prism.kv WHERE key = k FOR UPDATE;
            EXIT WHEN FOUND;  -- not found: deleted between the two statements
        END LOOP;
        i := array_position(read_keys, k);
        IF i IS NOT NULL AND (CASE WHEN live THEN cur END) IS DISTINCT FROM read_values[i] THEN
            RAISE EXCEPTION USING ERRCODE = '{CONFLICT_SQLSTATE}', MESSAGE = k;
        END IF;
    END LOOP;
    FOR i IN 1 .. coalesce(array_length(put_keys, 1), 0) LOOP
        IF put_values[i] IS NULL THEN
            DELETE FROM prism.kv WHERE key = put_keys[i];
        ELSE
            INSERT INTO prism.kv (key, value, expires_at) VALUES (put_keys[i], put_values[i], NULL)
                ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = NULL;
        END IF;
    END LOOP;
    -- numbered appends: counters are locked above (in lock_keys) and never read or put here
    FOR i IN 1 .. coalesce(array_length(logs, 1), 0) LOOP
        CONTINUE WHEN counters[i] IS NULL;
        SELECT CASE WHEN expires_at IS NULL OR expires_at > clock_timestamp() THEN value END INTO cur
            FROM prism.kv WHERE key = counters[i];
        IF cur IS NOT NULL AND encode(cur, 'escape') !~ '^[0-9]{{1,18}}$' THEN
            RAISE EXCEPTION USING ERRCODE = '{BAD_COUNTER_SQLSTATE}', MESSAGE = counters[i];
        END IF;
        n := coalesce(encode(cur, 'escape')::bigint, 0) + 1;
        UPDATE prism.kv SET value = convert_to(n::text, 'UTF8'), expires_at = NULL WHERE key = counters[i];
        metas[i] := jsonb_set(metas[i]::jsonb, ARRAY['h', headers[i]], to_jsonb(n::text))::text;
    END LOOP;
    -- placeholders of keys only read: never live, never left behind
    DELETE FROM prism.kv WHERE key = ANY(read_keys) AND NOT key = ANY(put_keys) AND expires_at = '-infinity';
    -- offsets past the last record and every truncation, read after the log locks were taken
    INSERT INTO prism.log_records (log, "offset", payload, meta)
        SELECT a.log,
               GREATEST(COALESCE((SELECT MAX(r."offset") + 1 FROM prism.log_records r WHERE r.log = a.log), 0),
                        COALESCE((SELECT h.next FROM prism.log_heads h WHERE h.log = a.log), 0))
                   + row_number() OVER (PARTITION BY a.log ORDER BY a.ord) - 1,
               a.payload, a.meta
        FROM unnest(logs, payloads, metas) WITH ORDINALITY AS a(log, payload, meta, ord)
        ORDER BY a.ord;
END
$apply$
"""

# A kv row that has not expired, by the server's clock: clients on several hosts agree on it.
_LIVE = "(expires_at IS NULL OR expires_at > clock_timestamp())"
_UPSERT = (
    "INSERT INTO prism.kv (key, value, expires_at) VALUES ($1, $2, NULL) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = NULL"
)
_LOCK_LOG = f"SELECT pg_advisory_xact_lock({LOCK_CLASS_LOG}, hashtext($1))"
# Past the last record, and past every truncation (log_heads), so offsets never go back.
_NEXT_OFFSET = (
    'SELECT GREATEST(COALESCE((SELECT MAX("offset") + 1 FROM prism.log_records WHERE log = $1), 0), '
    "COALESCE((SELECT next FROM prism.log_heads WHERE log = $1), 0))"
)
_INSERT_RECORD = 'INSERT INTO prism.log_records (log, "offset", payload, meta) VALUES ($1, $2, $3, $4)'

# Errors after which the outcome of the operation in flight is unknown.
_LOST: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # admin / crash shutdown, cannot connect now
    asyncpg.exceptions.ConnectionDoesNotExistError,
)

# A pool that cannot close in time, or whose server is gone, is terminated instead.
_CLOSE_FAILED: tuple[type[BaseException], ...] = (TimeoutError, *_LOST)


# --- helpers -------------------------------------------------------------------------------


def _name(value: str, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    if "\x00" in value:
        raise ValueError(f"{what} {value!r} contains NUL, which PostgreSQL text cannot hold")
    return value


class PostgresDialect(SqlDialect):
    schema = "prism."

    def placeholder(self, n: int) -> str:
        return f"${n}"

    def live(self, first: int) -> tuple[str, list[Any]]:
        return _LIVE, []

    def check_name(self, value: str, what: str) -> str:
        return _name(value, what)


DIALECT = PostgresDialect()


def _payload(message: Message) -> tuple[bytes, str]:
    """(payload, meta JSON) of ``message``, refusing payloads over the declared limit."""
    stored = freeze_message(message)
    if len(stored.payload) > MAX_PAYLOAD:
        raise PayloadTooLarge(len(stored.payload), MAX_PAYLOAD)
    meta = json.dumps({"h": dict(stored.headers), "k": stored.key}, separators=(",", ":"), sort_keys=True)
    return stored.payload, meta


def _message(payload: bytes, meta: str) -> Message:
    decoded = json.loads(meta)
    return Message(bytes(payload), decoded["h"], decoded["k"])


async def _append(conn: asyncpg.Connection, logs: dict[str, int], log: str, payload: bytes, meta: str) -> int:
    """Append inside the caller's transaction. The first append to ``log`` takes its lock and
    reads the next offset in a statement that starts after the lock is held (READ COMMITTED
    takes a fresh snapshot per statement), so it sees every earlier committed append."""
    if log not in logs:
        await conn.execute(_LOCK_LOG, log)
        logs[log] = int(await conn.fetchval(_NEXT_OFFSET, log))
    offset = logs[log]
    await conn.execute(_INSERT_RECORD, log, offset, payload, meta)
    logs[log] = offset + 1
    return offset


class _Pool:
    """The asyncpg pool, with lost connections reported as :class:`ConnectionLost`."""

    def __init__(self, backend: str, pool: asyncpg.Pool) -> None:
        self.backend = backend
        self.pool = pool

    def _lost(self, exc: BaseException) -> ConnectionLost:
        return ConnectionLost(redact(f"backend {self.backend!r}: connection to PostgreSQL lost: {exc}"))

    async def run(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        try:
            async with self.pool.acquire() as conn:
                return await fn(conn)
        except _LOST as exc:
            raise self._lost(exc) from exc

    async def write(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """``fn`` in one transaction, committed when it returns, rolled back when it raises."""

        async def job(conn: asyncpg.Connection) -> T:
            async with conn.transaction():
                return await fn(conn)

        return await self.run(job)

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        return await self.run(lambda conn: conn.fetchrow(sql, *args))

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        return await self.run(lambda conn: conn.fetch(sql, *args))

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self.run(lambda conn: conn.fetchval(sql, *args))

    async def execute(self, sql: str, *args: Any) -> str:
        return await self.run(lambda conn: conn.execute(sql, *args))

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.pool.close(), CLOSE_TIMEOUT)
        except _CLOSE_FAILED:
            self.pool.terminate()  # a killed server cannot take part in a clean close


def _affected(status: str) -> int:
    """Rows affected, from a command status such as ``DELETE 1`` or ``UPDATE 0``."""
    return int(status.rsplit(" ", 1)[-1])


# --- facets --------------------------------------------------------------------------------


class PostgresKeyValue:
    def __init__(self, driver: PostgresDriver) -> None:
        self._driver = driver
        self._db = driver.db

    async def get(self, key: str) -> bytes | None:
        value = await self._db.fetchval(f"SELECT value FROM prism.kv WHERE key = $1 AND {_LIVE}", _name(key, "key"))
        return None if value is None else bytes(value)

    async def put(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        _name(key, "key")
        data = as_bytes(value)
        if ttl is None:
            await self._db.execute(_UPSERT, key, data)
            return
        self._driver.require(Capability.KEYVALUE_TTL, "put with a ttl")
        seconds = check_positive(ttl, "ttl")
        await self._db.execute(
            "INSERT INTO prism.kv (key, value, expires_at) "
            "VALUES ($1, $2, clock_timestamp() + make_interval(secs => $3)) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
            key,
            data,
            seconds,
        )

    async def delete(self, key: str) -> bool:
        # The row goes even when expired; only a live one counts as having existed.
        live = await self._db.fetchval(
            f"WITH gone AS (DELETE FROM prism.kv WHERE key = $1 RETURNING {_LIVE} AS live) "
            "SELECT COALESCE(bool_or(live), false) FROM gone",
            _name(key, "key"),
        )
        return bool(live)

    async def exists(self, key: str) -> bool:
        row = await self._db.fetchrow(f"SELECT 1 FROM prism.kv WHERE key = $1 AND {_LIVE}", _name(key, "key"))
        return row is not None

    def scan(self, prefix: str) -> AsyncIterator[str]:
        # A plain def, so an undeclared scan raises at the call, not at the first iteration.
        self._driver.require(Capability.KEYVALUE_SCAN, "scan")
        _name(prefix, "prefix")
        return self._scan(prefix)

    async def _scan(self, prefix: str) -> AsyncIterator[str]:
        after: str | None = None
        while True:
            sql, args = DIALECT.scan_batch(prefix, after)
            rows = await self._db.fetch(sql, *args)
            for row in rows:
                yield row["key"]
            if len(rows) < SCAN_BATCH:
                return
            after = rows[-1]["key"]

    async def compare_and_set(self, key: str, expected: bytes | None, new: bytes) -> bool:
        self._driver.require(Capability.KEYVALUE_CAS, "compare_and_set")
        _name(key, "key")
        data = as_bytes(new)
        if expected is None:
            # Insert, or take over a row that has expired (absent as far as readers know). A
            # live row makes the conditional update a no-op, so nothing is returned.
            row = await self._db.fetchrow(
                "INSERT INTO prism.kv AS kv (key, value, expires_at) VALUES ($1, $2, NULL) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = NULL "
                "WHERE kv.expires_at IS NOT NULL AND kv.expires_at <= clock_timestamp() RETURNING 1",
                key,
                data,
            )
            return row is not None
        # READ COMMITTED re-checks the WHERE clause on the newest row version after waiting for
        # a concurrent writer, so of several racing callers exactly one matches.
        status = await self._db.execute(
            f"UPDATE prism.kv SET value = $3, expires_at = NULL WHERE key = $1 AND value = $2 AND {_LIVE}",
            key,
            as_bytes(expected, "expected"),
            data,
        )
        return _affected(status) == 1


class PostgresQueue:
    def __init__(self, driver: PostgresDriver) -> None:
        self._db = driver.db

    async def send(self, queue: str, message: Message) -> str:
        _name(queue, "queue")
        payload, meta = _payload(message)
        msg_id = await self._db.fetchval(
            "INSERT INTO prism.queue_messages (queue, payload, meta, available_at) "
            "VALUES ($1, $2, $3, clock_timestamp()) RETURNING id",
            queue,
            payload,
            meta,
        )
        return str(msg_id)

    async def receive(self, queue: str, *, wait: float = 0.0, visibility_timeout: float = 30.0) -> QueueDelivery | None:
        _name(queue, "queue")
        seconds = check_positive(visibility_timeout, "visibility_timeout")
        wait = check_wait(wait)

        async def claim() -> QueueDelivery | None:
            # SKIP LOCKED: competing consumers each take a different row instead of queueing up
            # behind the one a concurrent receive is claiming.
            delivery_id = uuid.uuid4().hex  # fresh per hand-out, so a stale ack is detectable
            row = await self._db.fetchrow(
                "WITH next AS ("
                "  SELECT id FROM prism.queue_messages"
                "  WHERE queue = $1 AND available_at <= clock_timestamp()"
                "  ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"
                ") "
                "UPDATE prism.queue_messages m SET"
                "  available_at = clock_timestamp() + make_interval(secs => $2),"
                "  attempt = m.attempt + 1, delivery_id = $3 "
                "FROM next WHERE m.id = next.id RETURNING m.payload, m.meta, m.attempt",
                queue,
                seconds,
                delivery_id,
            )
            if row is None:
                return None
            return QueueDelivery(delivery_id, _message(row["payload"], row["meta"]), row["attempt"])

        return await poll(claim, wait, POLL_INTERVAL)

    async def ack(self, queue: str, delivery: QueueDelivery) -> None:
        status = await self._db.execute(
            "DELETE FROM prism.queue_messages WHERE delivery_id = $2 AND queue = $1",
            _name(queue, "queue"),
            delivery.delivery_id,
        )
        if not _affected(status):
            raise DeliveryNotFound(f"queue {queue!r} holds no delivery {delivery.delivery_id!r} to ack")

    async def nack(self, queue: str, delivery: QueueDelivery) -> None:
        # Clearing delivery_id ends this delivery: a later ack or nack of it is stale.
        status = await self._db.execute(
            "UPDATE prism.queue_messages SET available_at = clock_timestamp(), delivery_id = NULL "
            "WHERE delivery_id = $2 AND queue = $1",
            _name(queue, "queue"),
            delivery.delivery_id,
        )
        if not _affected(status):
            raise DeliveryNotFound(f"queue {queue!r} holds no delivery {delivery.delivery_id!r} to nack")


class PostgresLog:
    def __init__(self, driver: PostgresDriver) -> None:
        self._db = driver.db

    async def append(self, log: str, message: Message) -> int:
        _name(log, "log")
        payload, meta = _payload(message)
        return await self._db.write(lambda conn: _append(conn, {}, log, payload, meta))

    async def read(self, log: str, offset: int, *, limit: int = 100, wait: float = 0.0) -> list[Record]:
        _name(log, "log")
        check_count(offset, "offset", 0)
        check_count(limit, "limit", 1)
        wait = check_wait(wait)

        async def attempt() -> list[Record]:
            rows = await self._db.fetch(
                'SELECT "offset", payload, meta FROM prism.log_records '
                'WHERE log = $1 AND "offset" >= $2 ORDER BY "offset" LIMIT $3',
                log,
                offset,
                limit,
            )
            return [Record(row["offset"], _message(row["payload"], row["meta"])) for row in rows]

        return await poll(attempt, wait, POLL_INTERVAL)

    async def end_offset(self, log: str) -> int:
        return int(await self._db.fetchval(_NEXT_OFFSET, _name(log, "log")))

    async def truncate(self, log: str, before: int) -> None:
        _name(log, "log")
        check_count(before, "before", 0)

        async def job(conn: asyncpg.Connection) -> None:
            await conn.execute(_LOCK_LOG, log)  # the lock appends take: the end cannot move
            end = int(await conn.fetchval(_NEXT_OFFSET, log))
            if before > end:
                raise ValueError(f"cannot truncate below {before}: log {log!r} ends at {end}")
            await conn.execute(
                "INSERT INTO prism.log_heads (log, next) VALUES ($1, $2) "
                "ON CONFLICT (log) DO UPDATE SET next = GREATEST(prism.log_heads.next, excluded.next)",
                log,
                end,
            )
            await conn.execute('DELETE FROM prism.log_records WHERE log = $1 AND "offset" < $2', log, before)

        await self._db.write(job)

    async def commit(self, log: str, group: str, offset: int) -> None:
        check_count(offset, "offset", 0)
        await self._db.execute(
            'INSERT INTO prism.log_groups (log, grp, "offset") VALUES ($1, $2, $3) '
            'ON CONFLICT (log, grp) DO UPDATE SET "offset" = excluded."offset"',
            _name(log, "log"),
            _name(group, "group"),
            offset,
        )

    async def committed(self, log: str, group: str) -> int | None:
        value = await self._db.fetchval(
            'SELECT "offset" FROM prism.log_groups WHERE log = $1 AND grp = $2',
            _name(log, "log"),
            _name(group, "group"),
        )
        return None if value is None else int(value)


class _Conflict(Exception):
    """A key this transaction read was changed by another writer before it could commit."""


@dataclass
class PostgresTransaction:
    """Writes staged in memory and applied in one PostgreSQL transaction when the block ends.

    Reads of keys not written here see the latest committed value; reads of keys written here
    see the staged value. Concurrency control is optimistic: the value first read of each key
    is remembered, and at commit every key read or written is row-locked (in sorted order) and
    each read is checked against the current value. A changed read aborts the transaction with
    nothing applied, so a read-modify-write never overwrites someone else's change.
    """

    db: _Pool
    staged: dict[str, bytes | None] = field(default_factory=dict)  # key -> value, None = deleted
    reads: dict[str, bytes | None] = field(default_factory=dict)  # key -> committed value first read
    # (log, payload, meta, counter, header): counter and header are None unless numbered
    appends: list[tuple[str, bytes, str, str | None, str | None]] = field(default_factory=list)
    numbering: Numbering = field(default_factory=Numbering)
    conflict: str | None = None  # set when two reads of one key disagreed
    finished: bool = False

    def _check_open(self) -> None:
        if self.finished:
            raise RuntimeError("transaction has already ended")

    async def get(self, key: str) -> bytes | None:
        self._check_open()
        self.numbering.touch(_name(key, "key"))
        if key in self.staged:
            return self.staged[key]
        raw = await self.db.fetchval(f"SELECT value FROM prism.kv WHERE key = $1 AND {_LIVE}", key)
        value = None if raw is None else bytes(raw)
        if key not in self.reads:
            self.reads[key] = value
        elif self.reads[key] != value and self.conflict is None:
            self.conflict = key  # changed between two reads: the commit check would catch it too
        return value

    async def put(self, key: str, value: bytes) -> None:
        self._check_open()
        self.numbering.touch(_name(key, "key"))
        self.staged[key] = as_bytes(value)

    async def delete(self, key: str) -> None:
        self._check_open()
        self.numbering.touch(_name(key, "key"))
        self.staged[key] = None

    async def append(self, log: str, message: Message) -> None:
        self._check_open()
        self.appends.append((_name(log, "log"), *_payload(message), None, None))

    async def append_numbered(self, log: str, message: Message, *, counter: str, header: str) -> None:
        self._check_open()
        self.numbering.count(_name(counter, "key"), header)
        # The number's digits are not counted against the payload limit: headers are not.
        self.appends.append((_name(log, "log"), *_payload(message), counter, header))

    @property
    def writes(self) -> bool:
        return bool(self.staged or self.appends)

    async def apply(self, conn: asyncpg.Connection) -> None:
        if self.conflict is not None:
            raise _Conflict(self.conflict)
        puts = sorted(self.staged.items())
        columns = [list(column) for column in zip(*self.appends, strict=True)] if self.appends else [[]] * 5
        logs, payloads, metas, counters, headers = columns
        # A single statement commits on its own: no BEGIN / COMMIT round trips.
        await conn.execute(
            "SELECT prism.apply_tx($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            sorted(set(logs)),
            sorted(self.reads.keys() | self.staged.keys() | self.numbering.counters),
            list(self.reads),
            list(self.reads.values()),
            [key for key, _ in puts],
            [value for _, value in puts],
            logs,
            payloads,
            metas,
            counters,
            headers,
        )


async def _changed_reads(tx: PostgresTransaction) -> str | None:
    """The first key a read-only transaction read whose value has changed since (one SELECT,
    so one snapshot: what it read was one state of the database exactly when none changed)."""
    if tx.conflict is not None:
        return tx.conflict
    rows = await tx.db.fetch(f"SELECT key, value FROM prism.kv WHERE key = ANY($1::text[]) AND {_LIVE}", list(tx.reads))
    now = {row["key"]: bytes(row["value"]) for row in rows}
    return next((key for key in sorted(tx.reads) if now.get(key) != tx.reads[key]), None)


def _aborted_by(key: str) -> TransactionAborted:
    return TransactionAborted(f"key {key!r} was changed by another writer after this transaction read it")


class PostgresTransactions:
    def __init__(self, driver: PostgresDriver) -> None:
        self._db = driver.db

    @staticmethod
    async def _validate_reads(tx: PostgresTransaction) -> None:
        # A read-only transaction overwrites nothing, but its reads ran one statement each: with
        # two keys or more, a writer committing between them shows it half of that writer (read
        # skew, G-single). Serializable means those reads must still hold at the end.
        if len(tx.reads) < 2 and tx.conflict is None:
            return  # one read is one statement: atomic by itself
        try:
            changed = await _changed_reads(tx)
        except asyncpg.PostgresError as exc:
            raise TransactionAborted(f"PostgreSQL transaction could not validate its reads: {exc}") from exc
        if changed is not None:
            raise _aborted_by(changed)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresTransaction]:
        tx = PostgresTransaction(self._db)
        try:
            yield tx
        except BaseException:
            tx.finished = True  # nothing was written: dropping the staged writes is the rollback
            raise
        tx.finished = True
        if not tx.writes:
            await self._validate_reads(tx)
            return
        try:
            await self._db.run(tx.apply)
        except _Conflict as exc:
            raise _aborted_by(exc.args[0]) from None
        except asyncpg.PostgresError as exc:  # lost connections surface as ConnectionLost
            if exc.sqlstate == CONFLICT_SQLSTATE:
                raise _aborted_by(str(exc)) from None
            if exc.sqlstate == BAD_COUNTER_SQLSTATE:
                raise bad_counter(str(exc)) from None
            raise TransactionAborted(f"PostgreSQL transaction could not commit: {exc}") from exc


# --- the driver ----------------------------------------------------------------------------


class PostgresDriver(Driver):
    backend_name = "postgres"

    def __init__(self, name: str, capabilities: frozenset[Capability], db: _Pool) -> None:
        super().__init__(name, capabilities)
        self.db = db
        self._keyvalue = PostgresKeyValue(self)
        self._queue = PostgresQueue(self)
        self._log = PostgresLog(self)
        self._transactions = PostgresTransactions(self)
        self._changefeed = PostgresChangeFeed(db)

    @classmethod
    async def connect(cls, name: str, capabilities: frozenset[Capability], endpoint: Endpoint) -> Self:
        try:
            pool = await asyncpg.create_pool(dsn=endpoint.url, min_size=POOL_MIN, max_size=POOL_MAX)
        except (*_LOST, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
            # asyncpg messages may echo the DSN; never let credentials out
            raise ProvisioningError(
                redact(f"backend {name!r}: cannot connect to {endpoint.url}: {type(exc).__name__}: {exc}")
            ) from None
        db = _Pool(name, pool)
        try:
            await db.write(_create_schema)
            missing = await db.run(logical_decoding_missing)
            version = await pool.fetchval("SHOW server_version")
        except BaseException:
            await db.close()
            raise
        driver = cls(name, capabilities, db)
        driver.server_version = str(version)
        if missing is not None and Capability.CHANGEFEED in capabilities:
            driver.withhold(Capability.CHANGEFEED, missing)  # a server given by URL may lack it
        return driver

    async def close(self) -> None:
        await self.db.close()

    def keyvalue(self) -> PostgresKeyValue:
        return self._keyvalue

    def queue(self) -> PostgresQueue:
        return self._queue

    def log(self) -> PostgresLog:
        return self._log

    def transactions(self) -> PostgresTransactions:
        return self._transactions

    def changefeed(self) -> PostgresChangeFeed:
        return self._changefeed

    async def purge(self, prefix: str) -> None:
        # Captures first (slots outside any transaction), so the deletes below are not captured.
        for capture in await self._changefeed.captures(prefix):
            await self._changefeed.drop(capture)

        async def job(conn: asyncpg.Connection) -> None:
            for sql, params in DIALECT.purge(prefix):
                await conn.execute(sql, *params)

        await self.db.write(job)

    async def leftovers(self, prefix: str) -> list[str]:
        async def snapshot(conn: asyncpg.Connection) -> list[str]:
            found: list[str] = []
            # REPEATABLE READ: every SELECT sees one snapshot
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                for query in DIALECT.leftovers(prefix):
                    found += [query.label(row) for row in await conn.fetch(query.sql, *query.params)]
                found += await leftover_captures(conn, prefix)  # slots retain WAL: a leak too
            return sorted(found)

        return await self.db.run(snapshot)


async def _create_schema(conn: asyncpg.Connection) -> None:
    # Concurrent CREATE ... IF NOT EXISTS can still fail on the catalog's unique indexes, so
    # connects from several workers take turns.
    await conn.execute(f"SELECT pg_advisory_xact_lock({LOCK_CLASS_DDL}, 0)")
    await conn.execute(SCHEMA)
    await conn.execute(APPLY_FUNCTION)
    await conn.execute(CHANGEFEED_SCHEMA)
