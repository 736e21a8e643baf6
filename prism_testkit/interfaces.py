"""The thin interfaces (layer 1) that patterns are written against.

Each interface is a small async :class:`typing.Protocol`. A backend implements the subset it
truly supports and declares it (see :mod:`prism_testkit.capabilities`); everything else raises
:class:`~prism_testkit.errors.NotSupported`. Names passed to these methods (keys, queues, logs,
topics, buckets) are opaque strings; the harness prefixes them per test for isolation.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Message:
    """What flows through queues, logs and topics: opaque bytes plus string headers."""

    payload: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    key: str | None = None

    def with_headers(self, **changes: str | None) -> Message:
        """A copy with headers set (``None`` removes a header)."""
        headers = dict(self.headers)
        for name, value in changes.items():
            if value is None:
                headers.pop(name, None)
            else:
                headers[name] = value
        return Message(self.payload, headers, self.key)


# The header a producer sets to make a resend of the same message recognisable: with
# ``queue.dedup`` the queue delivers one copy per id (within its window); without it, the header
# is only a header, and every send is delivered.
MESSAGE_ID_HEADER = "prism-message-id"


@dataclass(frozen=True, slots=True)
class QueueDelivery:
    """A message handed to one consumer of a durable queue, pending until acked."""

    delivery_id: str
    message: Message
    attempt: int  # 1 on first delivery, incremented on every redelivery


@dataclass(frozen=True, slots=True)
class Record:
    """A message stored in a log at a fixed offset (offsets start at 0 and never change)."""

    offset: int
    message: Message


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """Metadata of a stored object, readable without fetching its body."""

    bucket: str
    key: str
    size: int
    metadata: Mapping[str, str] = field(default_factory=dict)
    expires_at: float | None = None  # unix time, None when the object never expires


# --- key-value -----------------------------------------------------------------------------


@runtime_checkable
class KeyValue(Protocol):
    """Basic key-value, plus TTL (``keyvalue.ttl``), scan (``keyvalue.scan``) and
    compare-and-set (``keyvalue.cas``) when declared. Using an undeclared one raises
    :class:`~prism_testkit.errors.NotSupported` and writes nothing
    (``prism_testkit/suites/test_contract_keyvalue.py`` checks both ways)."""

    async def get(self, key: str) -> bytes | None:
        """The value, ``None`` for a missing (or expired) key."""
        ...

    async def put(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        """Write ``value``. ``ttl`` (seconds) without ``keyvalue.ttl`` declared raises
        :class:`~prism_testkit.errors.NotSupported`, and nothing is written; with it, the key
        is invisible to every read once expired, and a put without ``ttl`` clears the expiry."""
        ...

    async def delete(self, key: str) -> bool:
        """Whether the key existed; deleting a missing key is not an error."""
        ...

    async def exists(self, key: str) -> bool: ...
    def scan(self, prefix: str) -> AsyncIterator[str]:
        """Keys starting with ``prefix`` (taken literally: no wildcards). Without
        ``keyvalue.scan`` declared: :class:`~prism_testkit.errors.NotSupported`."""
        ...

    async def compare_and_set(self, key: str, expected: bytes | None, new: bytes) -> bool:
        """Write ``new`` only if the current value equals ``expected`` (``None``: key absent);
        whether it wrote. Without ``keyvalue.cas`` declared:
        :class:`~prism_testkit.errors.NotSupported`, and nothing is written."""
        ...


# --- messaging -----------------------------------------------------------------------------


@runtime_checkable
class Subscription(Protocol):
    async def receive(self, wait: float) -> Message | None:
        """The next message, waiting up to ``wait`` seconds; ``None`` when none came."""
        ...

    async def close(self) -> None:
        """Stop delivery: ``receive`` afterwards returns ``None`` or raises, never a message."""
        ...


@runtime_checkable
class PubSub(Protocol):
    """Ephemeral fan-out: every current subscriber gets each message published after it
    subscribed; nothing is kept for subscribers that come later."""

    async def publish(self, topic: str, message: Message) -> None: ...
    async def subscribe(self, topic: str) -> Subscription: ...


@runtime_checkable
class Queue(Protocol):
    """Durable queue with competing consumers. A received message stays pending until acked;
    it is redelivered after a nack or when its visibility timeout runs out.

    Every hand-out gets a fresh ``delivery_id``: an ack or nack naming a delivery that is no
    longer pending (acked, nacked, or expired and handed out again) raises
    :class:`~prism_testkit.errors.DeliveryNotFound`, so a slow consumer cannot ack the copy
    another consumer is working on. A nacked message is available again at once.
    """

    async def send(self, queue: str, message: Message) -> str:
        """Store ``message`` (as durably as the backend declares) and return its id. A payload
        over the declared ``max_payload`` raises :class:`~prism_testkit.errors.PayloadTooLarge`
        and queues nothing; one of exactly ``max_payload`` bytes is carried."""
        ...

    async def receive(self, queue: str, *, wait: float = 0.0, visibility_timeout: float = 30.0) -> QueueDelivery | None:
        """The next available message, waiting up to ``wait`` seconds; ``None`` when none came."""
        ...

    async def ack(self, queue: str, delivery: QueueDelivery) -> None:
        """Remove the delivered message, applied when this returns. A delivery no longer
        pending (acked, nacked, expired and handed out again), of another queue, or forged
        raises :class:`~prism_testkit.errors.DeliveryNotFound` and changes nothing."""
        ...

    async def nack(self, queue: str, delivery: QueueDelivery) -> None:
        """Make the message available again at once; a delivery no longer pending raises
        :class:`~prism_testkit.errors.DeliveryNotFound`, as for :meth:`ack`."""
        ...


@runtime_checkable
class Log(Protocol):
    """Append-only log with stable offsets, replay from any offset and group offsets.

    Offsets start at 0 and are dense. A negative offset raises ``ValueError``. ``commit``
    records the offset it is given (the last commit wins, also when it is lower).
    """

    async def append(self, log: str, message: Message) -> int:
        """Append and return the record's offset. A payload over the declared ``max_payload``
        raises :class:`~prism_testkit.errors.PayloadTooLarge` and takes no offset."""
        ...

    async def read(self, log: str, offset: int, *, limit: int = 100, wait: float = 0.0) -> list[Record]:
        """Records from ``offset`` on (at most ``limit``), waiting up to ``wait`` seconds when
        there are none yet. A negative ``offset`` raises ``ValueError``."""
        ...

    async def end_offset(self, log: str) -> int:
        """The offset the next append will get (0 for an empty or missing log)."""
        ...

    async def commit(self, log: str, group: str, offset: int) -> None:
        """Record that ``group`` has processed every record below ``offset``."""
        ...

    async def committed(self, log: str, group: str) -> int | None: ...


@runtime_checkable
class TruncatableLog(Protocol):
    """A :class:`Log` that can delete its oldest records (capability ``log.truncate``). A log
    that has ``truncate`` without the capability declared raises
    :class:`~prism_testkit.errors.NotSupported` from it and deletes nothing."""

    async def truncate(self, log: str, before: int) -> None:
        """Delete every record below offset ``before`` (``0 <= before <= end_offset``, else
        ``ValueError``). Nothing else changes: kept records keep their offsets, the next
        append still gets ``end_offset`` (also when every record was deleted), and a read from
        below ``before`` starts at the first kept record. A lower ``before`` than an earlier
        truncation deletes nothing."""
        ...


# --- objects -------------------------------------------------------------------------------


@runtime_checkable
class ObjectStore(Protocol):
    """Object storage after ADR-052, plus ``list_keys`` so leaks can be looked for.

    Every object operation on a missing bucket raises
    :class:`~prism_testkit.errors.BucketNotFound` (a put never creates its bucket). A failed
    ``put_stream`` leaves no object, and an object it would have replaced keeps its content.
    With ``objects.ttl``, an expired object is invisible to every read, as if deleted; without
    it, a ``ttl`` argument or :meth:`set_ttl` raises :class:`~prism_testkit.errors.NotSupported`
    and writes nothing. Errors carry what they name: ``BucketNotFound.bucket``,
    ``ObjectNotFound.bucket`` and ``.key``.
    """

    async def create_bucket(self, bucket: str) -> None: ...
    async def delete_bucket(self, bucket: str) -> None:
        """Delete an empty bucket. A missing one raises
        :class:`~prism_testkit.errors.BucketNotFound`; one holding objects raises
        :class:`~prism_testkit.errors.BucketNotEmpty` and keeps them."""
        ...

    async def bucket_exists(self, bucket: str) -> bool: ...
    async def put(
        self,
        bucket: str,
        key: str,
        data: bytes,
        *,
        metadata: Mapping[str, str] | None = None,
        ttl: float | None = None,
    ) -> ObjectInfo: ...
    async def put_stream(
        self,
        bucket: str,
        key: str,
        chunks: AsyncIterable[bytes],
        *,
        metadata: Mapping[str, str] | None = None,
        ttl: float | None = None,
    ) -> ObjectInfo:
        """Store the chunks as one object. An exception from ``chunks`` propagates unchanged
        and leaves no object (an object it would have replaced keeps its content)."""
        ...

    async def get(self, bucket: str, key: str) -> bytes:
        """The object's content; a missing or expired object raises
        :class:`~prism_testkit.errors.ObjectNotFound` (so do :meth:`info` and :meth:`get_stream`)."""
        ...

    def get_stream(self, bucket: str, key: str, *, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]: ...
    async def delete(self, bucket: str, key: str) -> None:
        """Idempotent: deleting a missing object is not an error."""
        ...

    async def exists(self, bucket: str, key: str) -> bool: ...
    async def info(self, bucket: str, key: str) -> ObjectInfo: ...
    async def set_ttl(self, bucket: str, key: str, ttl: float) -> None:
        """Expire the object ``ttl`` seconds from now (``objects.ttl``): a missing object
        raises :class:`~prism_testkit.errors.ObjectNotFound`; undeclared,
        :class:`~prism_testkit.errors.NotSupported`."""
        ...

    def list_keys(self, bucket: str, prefix: str = "") -> AsyncIterator[str]: ...


# --- transactions --------------------------------------------------------------------------


@runtime_checkable
class Transaction(Protocol):
    """Writes staged inside one atomic unit: all become visible at commit, or none do. An
    exception raised in the block propagates unchanged after the rollback."""

    async def get(self, key: str) -> bytes | None: ...
    async def put(self, key: str, value: bytes) -> None: ...
    async def delete(self, key: str) -> None: ...
    async def append(self, log: str, message: Message) -> None: ...


@runtime_checkable
class NumberingTransaction(Protocol):
    """A :class:`Transaction` that numbers appends at commit (capability
    ``transactions.numbering``)."""

    async def append_numbered(self, log: str, message: Message, *, counter: str, header: str) -> None:
        """Append ``message`` with header ``header`` set to the next number of the counter kept
        at key ``counter`` (a decimal integer; absent or expired counts as 0, so the first is
        1), and write that number to the counter, both at commit. Transactions numbering from
        one counter at once both commit, numbered in commit order: no read to check, so no
        abort, and no round trip before the commit. A counter that holds anything but a
        decimal integer aborts the commit (:class:`~prism_testkit.errors.TransactionAborted`,
        "counter ... holds no decimal number"), and nothing of the transaction is applied.
        A key used as a counter cannot also be read or written in the same transaction:
        ``ValueError``, raised by whichever call comes second ("key ... numbers appends in
        this transaction" after ``append_numbered``, "... cannot number appends" before it),
        and nothing is applied. Without the capability declared, a transaction that has this
        method raises :class:`~prism_testkit.errors.NotSupported` from it and writes nothing."""
        ...


@runtime_checkable
class Transactions(Protocol):
    """Atomic multi-write across keys (of the backend's key-value) and a log (of its log).

    ``async with tx.transaction() as t`` commits when the block ends and rolls back when it
    raises. Offsets of appended records are assigned at commit, in commit order, so a reader
    following the log by offset never skips a transaction that committed late.

    Isolation is **serializable** over the backend's keys: every committed transaction, read-only
    ones included, behaves as if it ran alone at one point between its start and its end. In
    Adya's terms, as Jepsen's Elle checks them (``stateful_isolation``), the committed history
    shows none of:

    - G0 (write cycle), G1a (a read of an aborted write), G1b (a read of a value a transaction
      overwrote before it committed), G1c (a cycle of writes and reads);
    - G-single (read skew: a cycle with one anti-dependency, e.g. a reader that sees half of
      another transaction);
    - G2-item (write skew: a cycle with two or more anti-dependencies, e.g. two transactions
      that each read ``x`` and ``y`` and each write one of them, both committing);
    - lost update (two read-modify-write transactions of one key both committing), and reads
      inside one transaction that disagree with each other or with its own writes.

    Readers outside never see uncommitted writes. A transaction that read a key which another
    writer changed before it ended either fails with
    :class:`~prism_testkit.errors.TransactionAborted` (nothing applied) or is serialised after
    that writer; it never silently overwrites the change.

    Where a conflict surfaces: at the commit (the block's end), or at **any statement** inside
    the block (a locking engine's deadlock victim, a serialization failure), always as
    ``TransactionAborted``; the block's exception then propagates after the rollback. Callers
    retry the whole block. A statement may also **wait** for another open transaction (a lock
    held until that one ends); such a wait is bounded by the harness's derived patience
    (:mod:`prism_testkit.patience`, ``docs/waits.md``), so a server-side lock-wait timeout
    should be shorter than the ``calm-op`` bound and surface as ``TransactionAborted``.
    Snapshot isolation (which allows write skew) or REPEATABLE READ as MySQL and MariaDB give
    it (lost update, read skew, write skew) does not keep this promise: declare
    ``transactions`` only at a level that does (``docs/backend-authors.md``).
    """

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """A transaction that commits when the ``async with`` block ends. A conflict raises
        :class:`~prism_testkit.errors.TransactionAborted` from the commit or from any statement
        of the block, with nothing applied."""
        ...


# --- change feed ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyChange:
    """One key's change inside a committed transaction. ``before`` is ``None`` when the key
    did not exist (an insert), ``after`` is ``None`` when the change deleted it."""

    key: str
    before: bytes | None
    after: bytes | None


@dataclass(frozen=True, slots=True)
class ChangeSet:
    """One committed transaction as a change feed delivers it: never split, never merged.

    ``position`` grows strictly in commit order (an LSN, a sequence number); confirming it
    consumes this transaction and every earlier one. ``marks`` are the labels written with
    :meth:`ChangeFeed.mark` (watermarks, heartbeats); a mark's transaction has no changes.
    """

    position: int
    txid: str
    commit_ts_ms: int
    changes: tuple[KeyChange, ...] = ()
    marks: tuple[str, ...] = ()


@runtime_checkable
class ChangeFeed(Protocol):
    """Committed key-value changes of keys under a prefix, captured from the backend's own
    change log (PostgreSQL logical decoding, an SQLite change table written by triggers in the
    writing transaction, an in-process feed).

    A *capture* is named (names under the test namespace are cleaned up with it) and records
    every transaction that commits after :meth:`create` returned and touches a key under its
    prefix. :meth:`read` returns whole transactions after the confirmed position, oldest
    first, without consuming them: until :meth:`confirm` they are read again (after a crash,
    too), so a reader that confirms only what its sink acknowledged loses nothing. Expiry of a
    key with a TTL is not a change.

    A capture whose position the server lost (PostgreSQL 15 does not carry logical slots to
    a standby, so a failover leaves the capture's record without its slot) is *lost*: every
    call on it but :meth:`drop` raises :class:`~prism_testkit.errors.CaptureLost`, ``create``
    included, since recreating it would silently skip the changes in between. Only a drop
    followed by a create starts it again, from now.
    """

    async def create(self, capture: str, prefix: str) -> None:
        """Start capturing (idempotent: an existing capture of the same prefix is kept with
        its position; another prefix raises ``ValueError``; a lost one raises
        :class:`~prism_testkit.errors.CaptureLost`). A capture name that is not a ``str``
        raises ``TypeError``."""
        ...

    async def read(self, capture: str, *, limit: int = 100, wait: float = 0.0) -> list[ChangeSet]:
        """Up to about ``limit`` transactions after the confirmed position (a transaction is
        never cut to fit), waiting up to ``wait`` seconds when there are none yet. Raises
        :class:`~prism_testkit.errors.CaptureNotFound` for a capture that does not exist,
        :class:`~prism_testkit.errors.CaptureLost` for a lost one, and ``ValueError`` for a
        ``limit`` below 1."""
        ...

    async def confirm(self, capture: str, position: int) -> None:
        """Everything up to and including ``position`` is consumed (a lower one is ignored).
        A negative ``position`` raises ``ValueError``; a missing capture
        :class:`~prism_testkit.errors.CaptureNotFound`; a lost one
        :class:`~prism_testkit.errors.CaptureLost`."""
        ...

    async def mark(self, capture: str, label: str) -> None:
        """Commit a transaction carrying ``label`` that only this capture sees, ordered with
        the changes around it (DBLog's watermarks; heartbeats that let the position move).
        It returns only once every change ordered before the mark is visible to reads begun
        after it: a watermark's chunk read must see them all. A missing capture raises
        :class:`~prism_testkit.errors.CaptureNotFound`, a lost one
        :class:`~prism_testkit.errors.CaptureLost`."""
        ...

    async def drop(self, capture: str) -> None:
        """Stop capturing and release what the capture holds (idempotent: dropping a missing
        capture is not an error)."""
        ...

    async def captures(self, prefix: str) -> list[str]:
        """Names of the captures whose name starts with ``prefix``."""
        ...


@runtime_checkable
class CaptureLoss(Protocol):
    """Fault injection for change feeds whose capture position can be lost apart from the
    data (not part of :class:`ChangeFeed`: a feed whose position lives in the data's own
    storage cannot lose one without the other)."""

    async def lose_capture(self, capture: str, *, remade: bool = False) -> None:
        """Lose ``capture``'s position and unconfirmed changes, keeping its record, exactly as
        a failover to a node without them does; ``remade``: and make fresh server state in its
        place, starting from now (a failover manager that recreates slots on the new primary).
        A missing capture raises :class:`~prism_testkit.errors.CaptureNotFound`."""
        ...
