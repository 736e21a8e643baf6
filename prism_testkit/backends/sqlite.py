"""A durable embedded backend over one SQLite database file (stdlib :mod:`sqlite3`).

Implements key-value (with TTL, scan and compare-and-set), a durable queue, an append-only log
and transactions across keys and logs. The file uses WAL with ``synchronous=FULL``, so a write
that returned has been fsynced and survives a kill of this process.

:mod:`sqlite3` blocks, so every database call runs on one dedicated worker thread that owns the
connection: the event loop never waits on disk, and the connection is never shared between
threads. Each job sent to that thread is self-contained (it opens and ends its own SQLite
transaction), so a cancelled caller can never leave a transaction open on the connection.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self, TypeVar

from prism_testkit.capabilities import BackendProperties, Capability, Ordering
from prism_testkit.driver import Driver
from prism_testkit.errors import ConfigurationError, DeliveryNotFound, TransactionAborted
from prism_testkit.interfaces import Message, QueueDelivery, Record
from prism_testkit.provision.base import EmbeddedProvisioner, Endpoint
from prism_testkit.registry.backends import BackendSpec
from prism_testkit.registry.hookspecs import hookimpl

from ._common import Numbering, check_offset, next_number, numbered
from ._sql import SCAN_BATCH, SqlDialect, poll
from ._sqlitefeed import SCHEMA as CHANGEFEED_SCHEMA
from ._sqlitefeed import SqliteChangeFeed, capture_names, drop_captures

T = TypeVar("T")

DB_FILENAME = "prism.sqlite3"
POLL_INTERVAL = 0.015  # seconds between polls while a receive / read waits for data
BUSY_TIMEOUT = 30.0  # seconds to wait for another connection's write lock

CAPABILITIES: frozenset[Capability] = frozenset(
    {
        Capability.KEYVALUE,
        Capability.KEYVALUE_TTL,
        Capability.KEYVALUE_SCAN,
        Capability.KEYVALUE_CAS,
        Capability.QUEUE,
        Capability.LOG,
        Capability.LOG_TRUNCATE,
        Capability.TRANSACTIONS,
        Capability.TRANSACTIONS_NUMBERING,
        Capability.CHANGEFEED,
    }
)
PROPERTIES = BackendProperties(
    durable=True, survives_power_loss=True, ordering=Ordering.TOTAL
)  # WAL fsynced per commit

SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    key        TEXT PRIMARY KEY,
    value      BLOB NOT NULL,
    expires_at REAL
);
CREATE TABLE IF NOT EXISTS queue_messages (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: FIFO order survives deletes
    queue        TEXT NOT NULL,
    payload      BLOB NOT NULL,
    headers      TEXT NOT NULL,
    key          TEXT,
    available_at REAL NOT NULL,
    attempt      INTEGER NOT NULL DEFAULT 0,
    delivery_id  TEXT
);
CREATE INDEX IF NOT EXISTS queue_messages_by_queue ON queue_messages (queue, id);
CREATE INDEX IF NOT EXISTS queue_messages_by_delivery ON queue_messages (queue, delivery_id);
CREATE TABLE IF NOT EXISTS log_records (
    log     TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    payload BLOB NOT NULL,
    headers TEXT NOT NULL,
    key     TEXT,
    PRIMARY KEY (log, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS log_heads (
    log  TEXT PRIMARY KEY,
    next INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS log_groups (
    log TEXT NOT NULL,
    grp TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (log, grp)
) WITHOUT ROWID;
"""

_LIVE = "(expires_at IS NULL OR expires_at > ?)"  # a kv row that has not expired


class SqliteDialect(SqlDialect):
    def placeholder(self, n: int) -> str:
        return "?"  # positional: the parameters' order is the placeholders' order

    def live(self, first: int) -> tuple[str, list[Any]]:
        return _LIVE, [time.time()]  # expiry is this process's wall clock (one host)


DIALECT = SqliteDialect()


def _encode_headers(message: Message) -> str:
    return json.dumps(dict(message.headers), separators=(",", ":"), sort_keys=True)


def _message(payload: bytes, headers: str, key: str | None) -> Message:
    return Message(bytes(payload), json.loads(headers), key)


def _live_value(conn: sqlite3.Connection, key: str) -> bytes | None:
    row = conn.execute(f"SELECT value FROM kv WHERE key = ? AND {_LIVE}", (key, time.time())).fetchone()
    return None if row is None else bytes(row[0])


# Past the last record, and past every truncation (log_heads), so offsets never go back.
_NEXT_OFFSET = (
    "SELECT MAX(COALESCE((SELECT MAX(seq) + 1 FROM log_records WHERE log = ?1), 0), "
    "COALESCE((SELECT next FROM log_heads WHERE log = ?1), 0))"
)


def _next_offset(conn: sqlite3.Connection, log: str) -> int:
    (offset,) = conn.execute(_NEXT_OFFSET, (log,)).fetchone()
    return int(offset)


def _append(conn: sqlite3.Connection, log: str, message: Message) -> int:
    """Append inside the caller's write transaction: max+1 is safe because BEGIN IMMEDIATE
    holds the database write lock until commit."""
    offset = _next_offset(conn, log)
    conn.execute(
        "INSERT INTO log_records (log, seq, payload, headers, key) VALUES (?, ?, ?, ?, ?)",
        (log, offset, bytes(message.payload), _encode_headers(message), message.key),
    )
    return int(offset)


# --- the worker thread ---------------------------------------------------------------------


class _Database:
    """The connection and the single thread allowed to touch it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"prism-sqlite-{path.name}")
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._txid = uuid.uuid4().hex  # renewed for every write transaction (the change feed's txid)

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._open)
        except BaseException:
            await self.close()
            raise

    def _open(self) -> None:
        # isolation_level=None: no implicit transactions; we issue BEGIN IMMEDIATE ourselves.
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)
        self._conn = conn
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # fsync the WAL on every commit: durable
        # what the change feed's triggers call: the current transaction's id and expiry's clock
        conn.create_function("prism_cdc_txid", 0, lambda: self._txid)
        conn.create_function("prism_cdc_now", 0, time.time)
        conn.executescript(SCHEMA + CHANGEFEED_SCHEMA)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` on the worker thread (``fn`` must not leave a transaction open)."""
        if self._closed:
            raise RuntimeError(f"sqlite database {self.path} is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, fn)

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:
            raise RuntimeError(f"sqlite database {self.path} is not open")
        return fn(self._conn)

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one deferred transaction so its SELECTs see a single snapshot."""

        def job(conn: sqlite3.Connection) -> T:
            conn.execute("BEGIN")
            try:
                return fn(conn)
            finally:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")  # read-only: ending it either way releases the snapshot

        return await self.run(job)

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one write transaction, committed when it returns, rolled back when it
        raises. BEGIN IMMEDIATE takes the write lock up front, so read-then-write is atomic
        even against other connections to the same file."""

        def job(conn: sqlite3.Connection) -> T:
            self._txid = uuid.uuid4().hex
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # also when COMMIT itself failed: never leave it open
                    conn.execute("ROLLBACK")
                raise
            return result

        return await self.run(job)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True

        def shut() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, shut)
        finally:
            # wait=False: the close job above was the last one, so the thread is idle.
            self._executor.shutdown(wait=False)


# --- facets --------------------------------------------------------------------------------


class SqliteKeyValue:
    def __init__(self, driver: SqliteDriver) -> None:
        self._driver = driver
        self._db = driver.db

    async def get(self, key: str) -> bytes | None:
        return await self._db.run(lambda conn: _live_value(conn, key))

    async def put(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        expires_at: float | None = None
        if ttl is not None:
            self._driver.require(Capability.KEYVALUE_TTL, "put with a ttl")
            if not ttl > 0:
                raise ValueError(f"ttl must be > 0 seconds, got {ttl}")
            expires_at = time.time() + ttl
        data = bytes(value)

        def job(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO kv (key, value, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
                (key, data, expires_at),
            )

        await self._db.write(job)

    async def delete(self, key: str) -> bool:
        def job(conn: sqlite3.Connection) -> bool:
            live = conn.execute(f"SELECT 1 FROM kv WHERE key = ? AND {_LIVE}", (key, time.time())).fetchone()
            conn.execute("DELETE FROM kv WHERE key = ?", (key,))  # an expired row goes too
            return live is not None

        return await self._db.write(job)

    async def exists(self, key: str) -> bool:
        def job(conn: sqlite3.Connection) -> bool:
            row = conn.execute(f"SELECT 1 FROM kv WHERE key = ? AND {_LIVE}", (key, time.time())).fetchone()
            return row is not None

        return await self._db.run(job)

    def scan(self, prefix: str) -> AsyncIterator[str]:
        # A plain def, so an undeclared scan raises at the call, not at the first iteration.
        self._driver.require(Capability.KEYVALUE_SCAN, "scan")
        return self._scan(prefix)

    async def _scan(self, prefix: str) -> AsyncIterator[str]:
        after: str | None = None

        def batch(conn: sqlite3.Connection) -> list[str]:
            return [key for (key,) in conn.execute(*DIALECT.scan_batch(prefix, after))]

        while True:
            keys = await self._db.run(batch)
            for key in keys:
                yield key
            if len(keys) < SCAN_BATCH:
                return
            after = keys[-1]

    async def compare_and_set(self, key: str, expected: bytes | None, new: bytes) -> bool:
        self._driver.require(Capability.KEYVALUE_CAS, "compare_and_set")
        want = None if expected is None else bytes(expected)
        data = bytes(new)

        def job(conn: sqlite3.Connection) -> bool:
            if _live_value(conn, key) != want:
                return False
            conn.execute(
                "INSERT INTO kv (key, value, expires_at) VALUES (?, ?, NULL) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = NULL",
                (key, data),
            )
            return True

        return await self._db.write(job)


class SqliteQueue:
    def __init__(self, driver: SqliteDriver) -> None:
        self._db = driver.db

    async def send(self, queue: str, message: Message) -> str:
        payload, headers, key = bytes(message.payload), _encode_headers(message), message.key

        def job(conn: sqlite3.Connection) -> str:
            cur = conn.execute(
                "INSERT INTO queue_messages (queue, payload, headers, key, available_at) VALUES (?, ?, ?, ?, ?)",
                (queue, payload, headers, key, time.time()),
            )
            return str(cur.lastrowid)

        return await self._db.write(job)

    async def receive(self, queue: str, *, wait: float = 0.0, visibility_timeout: float = 30.0) -> QueueDelivery | None:
        if visibility_timeout < 0:
            raise ValueError(f"visibility_timeout must be >= 0, got {visibility_timeout}")

        def job(conn: sqlite3.Connection) -> QueueDelivery | None:
            now = time.time()
            row = conn.execute(
                "SELECT id, payload, headers, key, attempt FROM queue_messages "
                "WHERE queue = ? AND available_at <= ? ORDER BY id LIMIT 1",
                (queue, now),
            ).fetchone()
            if row is None:
                return None
            msg_id, payload, headers, key, attempt = row
            delivery_id = uuid.uuid4().hex  # fresh per delivery, so a stale ack is detectable
            conn.execute(
                "UPDATE queue_messages SET available_at = ?, attempt = ?, delivery_id = ? WHERE id = ?",
                (now + visibility_timeout, attempt + 1, delivery_id, msg_id),
            )
            return QueueDelivery(delivery_id, _message(payload, headers, key), attempt + 1)

        return await poll(lambda: self._db.write(job), wait, POLL_INTERVAL)

    async def ack(self, queue: str, delivery: QueueDelivery) -> None:
        def job(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "DELETE FROM queue_messages WHERE queue = ? AND delivery_id = ?",
                (queue, delivery.delivery_id),
            )
            return cur.rowcount

        if not await self._db.write(job):
            raise DeliveryNotFound(f"queue {queue!r} holds no delivery {delivery.delivery_id!r} to ack")

    async def nack(self, queue: str, delivery: QueueDelivery) -> None:
        # Clearing delivery_id ends this delivery: a later ack or nack of it is stale.
        def job(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "UPDATE queue_messages SET available_at = ?, delivery_id = NULL WHERE queue = ? AND delivery_id = ?",
                (time.time(), queue, delivery.delivery_id),
            )
            return cur.rowcount

        if not await self._db.write(job):
            raise DeliveryNotFound(f"queue {queue!r} holds no delivery {delivery.delivery_id!r} to nack")


class SqliteLog:
    def __init__(self, driver: SqliteDriver) -> None:
        self._db = driver.db

    async def append(self, log: str, message: Message) -> int:
        return await self._db.write(lambda conn: _append(conn, log, message))

    async def read(self, log: str, offset: int, *, limit: int = 100, wait: float = 0.0) -> list[Record]:
        check_offset(offset)
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")

        def job(conn: sqlite3.Connection) -> list[Record]:
            rows = conn.execute(
                "SELECT seq, payload, headers, key FROM log_records WHERE log = ? AND seq >= ? ORDER BY seq LIMIT ?",
                (log, offset, limit),
            )
            return [Record(seq, _message(payload, headers, key)) for seq, payload, headers, key in rows]

        records = await poll(lambda: self._db.run(job), wait, POLL_INTERVAL)
        return records or []

    async def end_offset(self, log: str) -> int:
        return await self._db.run(lambda conn: _next_offset(conn, log))

    async def truncate(self, log: str, before: int) -> None:
        check_offset(before)

        def job(conn: sqlite3.Connection) -> None:
            end = _next_offset(conn, log)
            if before > end:
                raise ValueError(f"cannot truncate below {before}: log {log!r} ends at {end}")
            conn.execute(
                "INSERT INTO log_heads (log, next) VALUES (?, ?) "
                "ON CONFLICT (log) DO UPDATE SET next = MAX(next, excluded.next)",
                (log, end),
            )
            conn.execute("DELETE FROM log_records WHERE log = ? AND seq < ?", (log, before))

        await self._db.write(job)

    async def commit(self, log: str, group: str, offset: int) -> None:
        check_offset(offset)

        def job(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO log_groups (log, grp, seq) VALUES (?, ?, ?) "
                "ON CONFLICT (log, grp) DO UPDATE SET seq = excluded.seq",
                (log, group, offset),
            )

        await self._db.write(job)

    async def committed(self, log: str, group: str) -> int | None:
        def job(conn: sqlite3.Connection) -> int | None:
            row = conn.execute("SELECT seq FROM log_groups WHERE log = ? AND grp = ?", (log, group)).fetchone()
            return None if row is None else int(row[0])

        return await self._db.run(job)


_UPSERT = (
    "INSERT INTO kv (key, value, expires_at) VALUES (?, ?, NULL) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = NULL"
)


@dataclass
class SqliteTransaction:
    """Writes staged in memory and applied in one SQLite transaction when the block ends.

    Staging (rather than holding BEGIN open across awaits) matters because the connection is
    shared by the whole driver: an open SQLite transaction would swallow every other caller's
    writes into it. Reads of keys not written here see the latest committed value, and are
    validated at commit (optimistic concurrency): if one changed meanwhile, the commit raises
    TransactionAborted instead of silently overwriting the other writer's update.
    """

    db: _Database
    ops: list[tuple[str, str, Any]] = field(default_factory=list)  # (kind, name, value)
    staged: dict[str, bytes | None] = field(default_factory=dict)  # key -> value, None = deleted
    reads: dict[str, bytes | None] = field(default_factory=dict)  # key -> committed value seen
    numbering: Numbering = field(default_factory=Numbering)
    reread_changed: bool = False  # a key read twice gave two values
    finished: bool = False

    def _check_open(self) -> None:
        if self.finished:
            raise RuntimeError("transaction has already ended")

    async def get(self, key: str) -> bytes | None:
        self._check_open()
        self.numbering.touch(key)
        if key in self.staged:
            return self.staged[key]
        value = await self.db.run(lambda conn: _live_value(conn, key))
        if self.reads.setdefault(key, value) != value:
            self.reread_changed = True  # a non-repeatable read: the commit check would see it too
        return value

    async def put(self, key: str, value: bytes) -> None:
        self._check_open()
        self.numbering.touch(key)
        data = bytes(value)
        self.staged[key] = data
        self.ops.append(("put", key, data))

    async def delete(self, key: str) -> None:
        self._check_open()
        self.numbering.touch(key)
        self.staged[key] = None
        self.ops.append(("delete", key, None))

    async def append(self, log: str, message: Message) -> None:
        self._check_open()
        self.ops.append(("append", log, message))

    async def append_numbered(self, log: str, message: Message, *, counter: str, header: str) -> None:
        self._check_open()
        self.numbering.count(counter, header)
        self.ops.append(("append_numbered", log, (message, counter, header)))

    def changed_reads(self, conn: sqlite3.Connection) -> list[str]:
        return sorted(key for key, seen in self.reads.items() if _live_value(conn, key) != seen)

    def apply(self, conn: sqlite3.Connection) -> None:
        # Under the write lock (BEGIN IMMEDIATE), so nobody can change a key between this check
        # and the writes below.
        changed = self.changed_reads(conn)
        if changed:
            raise TransactionAborted(f"keys read by this transaction changed before it committed: {changed}")
        for kind, name, value in self.ops:
            if kind == "put":
                conn.execute(_UPSERT, (name, value))
            elif kind == "delete":
                conn.execute("DELETE FROM kv WHERE key = ?", (name,))
            elif kind == "append_numbered":  # numbered under the write lock: commit order
                message, counter, header = value
                number = next_number(counter, _live_value(conn, counter))
                conn.execute(_UPSERT, (counter, str(number).encode()))
                _append(conn, name, numbered(message, header, number))
            else:  # offsets are assigned here, under the write lock, so they follow commit order
                _append(conn, name, value)


class SqliteTransactions:
    def __init__(self, driver: SqliteDriver) -> None:
        self._db = driver.db

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteTransaction]:
        tx = SqliteTransaction(self._db)
        try:
            yield tx
        except BaseException:
            tx.finished = True  # nothing was written: dropping the staged ops is the rollback
            raise
        tx.finished = True
        if not tx.ops:
            # Read-only: it overwrites nothing, but with two keys read in separate statements a
            # writer committing between them shows it half of that writer (read skew, G-single).
            # Serializable means those reads must still hold, checked in one snapshot.
            if len(tx.reads) > 1 or tx.reread_changed:
                changed = await self._db.read(tx.changed_reads)
                if changed or tx.reread_changed:
                    raise TransactionAborted(f"keys read by this transaction changed before it ended: {changed}")
            return
        try:
            await self._db.write(tx.apply)
        except sqlite3.Error as exc:
            raise TransactionAborted(f"sqlite transaction could not commit: {exc}") from exc


# --- the driver ----------------------------------------------------------------------------


class SqliteDriver(Driver):
    backend_name = "sqlite"

    def __init__(self, name: str, capabilities: frozenset[Capability], db: _Database) -> None:
        super().__init__(name, capabilities)
        self.db = db
        self._keyvalue = SqliteKeyValue(self)
        self._queue = SqliteQueue(self)
        self._log = SqliteLog(self)
        self._transactions = SqliteTransactions(self)
        self._changefeed = SqliteChangeFeed(db)

    @classmethod
    async def connect(cls, name: str, capabilities: frozenset[Capability], endpoint: Endpoint) -> Self:
        directory = endpoint.options.get("path")
        if directory is None:
            raise ConfigurationError(f"backend {name!r}: endpoint has no 'path' option for the database")
        return await cls.open_file(Path(directory) / DB_FILENAME, name, capabilities)

    @classmethod
    async def open_file(cls, file: Path, name: str, capabilities: frozenset[Capability]) -> Self:
        db = _Database(file)
        await db.open()
        driver = cls(name, capabilities, db)
        driver.server_version = f"SQLite {sqlite3.sqlite_version}"  # the library this process links
        return driver

    async def close(self) -> None:
        await self.db.close()

    def keyvalue(self) -> SqliteKeyValue:
        return self._keyvalue

    def queue(self) -> SqliteQueue:
        return self._queue

    def log(self) -> SqliteLog:
        return self._log

    def transactions(self) -> SqliteTransactions:
        return self._transactions

    def changefeed(self) -> SqliteChangeFeed:
        return self._changefeed

    async def purge(self, prefix: str) -> None:
        def job(conn: sqlite3.Connection) -> None:
            drop_captures(conn, prefix)  # first, so the deletes below are not captured
            for sql, params in DIALECT.purge(prefix):
                conn.execute(sql, params)

        await self.db.write(job)

    async def leftovers(self, prefix: str) -> list[str]:
        def job(conn: sqlite3.Connection) -> list[str]:
            # db.read runs it in one transaction: every query sees one snapshot
            found = [q.label(row) for q in DIALECT.leftovers(prefix) for row in conn.execute(q.sql, q.params)]
            return sorted(found + [f"capture:{name}" for name in capture_names(conn, prefix)])

        return await self.db.read(job)


async def open_sqlite(path: Path, name: str = "sqlite") -> SqliteDriver:
    """A driver with every capability of this backend, outside the harness. ``path`` is a
    directory (the database is ``prism.sqlite3`` in it, as in the harness) or a file."""
    path = Path(path)
    file = path / DB_FILENAME if path.is_dir() else path
    return await SqliteDriver.open_file(file, name, CAPABILITIES)


@hookimpl
def prism_register_backends() -> list[BackendSpec]:
    return [
        BackendSpec(
            name="sqlite",
            capabilities=CAPABILITIES,
            properties=PROPERTIES,
            provisioner=EmbeddedProvisioner("a database file in a temp dir"),
            driver=SqliteDriver,
            embedded=True,
            description="SQLite database file (WAL, synchronous=FULL): durable key-value, queue, log and transactions",
        )
    ]
