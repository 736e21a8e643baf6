"""memstore: an in-process backend implementing every interface.

State lives in a module-level table of stores keyed by endpoint URL, so every driver connected
to the same endpoint sees the same data (and a reconnect finds it again), while everything is
lost when the process ends: the backend declares ``durable=False``.

All operations run on the event loop without awaiting in the middle of a state change, so each
one is atomic with respect to other coroutines. Waiting receivers park on futures created on
their own loop, so a store survives being used from several event loops in turn. The store is
not thread-safe: use it from one thread at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import weakref
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar, Self, TypeVar

import prism_testkit.simulation.clock as clocks
from prism_testkit.capabilities import BackendProperties, Capability, DeliveryGuarantee, Ordering
from prism_testkit.driver import Driver
from prism_testkit.errors import (
    BucketNotEmpty,
    BucketNotFound,
    DeliveryNotFound,
    ObjectNotFound,
    TransactionAborted,
)
from prism_testkit.interfaces import (
    MESSAGE_ID_HEADER,
    ChangeFeed,
    ChangeSet,
    KeyValue,
    Log,
    Message,
    ObjectInfo,
    ObjectStore,
    PubSub,
    Queue,
    QueueDelivery,
    Record,
    Subscription,
    Transaction,
    Transactions,
)
from prism_testkit.provision.base import EmbeddedProvisioner, Endpoint
from prism_testkit.registry.backends import BackendSpec
from prism_testkit.registry.hookspecs import hookimpl
from prism_testkit.simulation import buggify

from ._changefeed import check_capture, check_label, check_position, check_prefix, check_read, other_prefix
from ._common import (
    Numbering,
    as_bytes,
    check_count,
    check_metadata,
    check_name,
    check_positive,
    check_wait,
    freeze_message,
    next_number,
    numbered,
)
from ._memfeed import Capture, MemFeed
from ._sql import poll

ALL_CAPABILITIES: frozenset[Capability] = frozenset(Capability)
# A publish is in the buffer of every subscription established before it when it returns, and
# each buffered message is handed out once: pub/sub is exactly-once while the process lives.
PROPERTIES = BackendProperties(
    durable=False,
    survives_power_loss=False,
    ordering=Ordering.TOTAL,
    pubsub_delivery=DeliveryGuarantee.EXACTLY_ONCE,
)
FEED_POLL_INTERVAL = 0.01  # seconds between looks while a change feed read waits
DEDUP_WINDOW = 120.0  # seconds a queue remembers a message id (JetStream's default window)


# --- seeded misbehaviour (simulated examples only) -------------------------------------------


async def _answer() -> None:
    """Where a real server's answer may come late, or be lost after its effect happened."""
    if buggify.fires(buggify.LATE):
        await asyncio.sleep(buggify.late_by())
    if buggify.fires(buggify.UNKNOWN):
        raise TimeoutError("the answer was lost after the operation took effect (simulated misbehaviour)")


# --- waking waiters --------------------------------------------------------------------------


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _wake(future: asyncio.Future[None]) -> None:
    loop = future.get_loop()
    try:
        current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        current = None
    if loop is current:
        _resolve(future)
    else:  # a waiter on another loop: hand the wake-up to that loop
        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody is waiting any more
            loop.call_soon_threadsafe(_resolve, future)


class _Signal:
    """Wakes every coroutine waiting for a change. Unlike asyncio.Event it is bound to no loop."""

    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        # Insertion-ordered, not a set: a set of futures iterates in address order, which made
        # the order competing waiters wake in, and so a simulated seed's history, vary by run.
        self._waiters: dict[asyncio.Future[None], None] = {}

    def __bool__(self) -> bool:
        return bool(self._waiters)

    async def wait(self, seconds: float) -> None:
        """Return at the next :meth:`notify_all`, or after ``seconds`` seconds."""
        if seconds <= 0:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[future] = None
        try:
            await asyncio.wait((future,), timeout=seconds)
        finally:
            self._waiters.pop(future, None)

    def notify_all(self) -> None:
        for future in list(self._waiters):
            _wake(future)


class _Signals:
    """One :class:`_Signal` per name, kept only while someone waits on it."""

    def __init__(self) -> None:
        self._by_name: dict[str, _Signal] = {}

    async def wait(self, name: str, seconds: float) -> None:
        signal = self._by_name.setdefault(name, _Signal())
        try:
            await signal.wait(seconds)
        finally:
            if not signal and self._by_name.get(name) is signal:
                del self._by_name[name]

    def notify(self, name: str) -> None:
        signal = self._by_name.get(name)
        if signal is not None:
            signal.notify_all()


# --- state -----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Entry:
    value: bytes
    expires_at: float | None  # clocks.monotonic()
    version: int  # changes on every write; transactions use it to detect conflicting writes


class _KeyValueState:
    def __init__(self, feed: MemFeed) -> None:
        self._feed = feed  # told of every write (not of expiry, not of purge)
        self._entries: dict[str, _Entry] = {}
        self._versions = itertools.count(1)

    def _live(self, key: str) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is not None and entry.expires_at is not None and entry.expires_at <= clocks.monotonic():
            del self._entries[key]  # expire lazily
            return None
        return entry

    def get(self, key: str) -> bytes | None:
        entry = self._live(key)
        return None if entry is None else entry.value

    def version(self, key: str) -> int:
        """0 while the key is absent."""
        entry = self._live(key)
        return 0 if entry is None else entry.version

    def put(self, key: str, value: bytes, ttl: float | None = None) -> None:
        expires_at = None if ttl is None else clocks.monotonic() + ttl
        before = self.get(key)
        self._entries[key] = _Entry(value, expires_at, next(self._versions))
        self._feed.record(key, before, value)

    def delete(self, key: str) -> bool:
        before = self.get(key)
        self._entries.pop(key, None)
        self._feed.record(key, before, None)
        return before is not None

    def keys(self, prefix: str) -> list[str]:
        return [k for k in list(self._entries) if k.startswith(prefix) and self._live(k) is not None]

    def purge(self, prefix: str) -> None:
        for key in [k for k in self._entries if k.startswith(prefix)]:
            del self._entries[key]


@dataclass(slots=True)
class _Queued:
    seq: int  # send order: the oldest available message goes first, also after a redelivery
    message_id: str
    message: Message
    attempts: int = 0


class _QueueState:
    def __init__(self, name: str) -> None:
        self.name = name
        self._seq = itertools.count()
        self._ready: list[tuple[int, _Queued]] = []  # heap by seq
        self._in_flight: dict[str, tuple[_Queued, float]] = {}  # delivery id -> (message, deadline)
        self._deadlines: list[tuple[float, str]] = []  # heap; entries of settled deliveries go stale
        self._sent_ids: dict[str, tuple[str, float]] = {}  # queue.dedup: id -> (message id, sent at)

    def __len__(self) -> int:
        return len(self._ready) + len(self._in_flight)

    def send(self, message: Message) -> str:
        dedup_id = message.headers.get(MESSAGE_ID_HEADER)
        now = clocks.monotonic()
        while self._sent_ids and next(iter(self._sent_ids.values()))[1] <= now - DEDUP_WINDOW:
            del self._sent_ids[next(iter(self._sent_ids))]  # oldest first: insertion order
        if dedup_id is not None and dedup_id in self._sent_ids:
            return self._sent_ids[dedup_id][0]  # a resend: the original's id, nothing queued
        queued = _Queued(next(self._seq), clocks.fresh_uuid().hex, message)
        heapq.heappush(self._ready, (queued.seq, queued))
        if dedup_id is not None:
            self._sent_ids[dedup_id] = (queued.message_id, now)
        return queued.message_id

    def take(self, visibility_timeout: float) -> QueueDelivery | None:
        self._expire()
        if not self._ready:
            return None
        _, queued = heapq.heappop(self._ready)
        queued.attempts += 1
        delivery_id = clocks.fresh_uuid().hex  # new per hand-out, so a stale ack cannot hit a redelivery
        deadline = clocks.monotonic() + visibility_timeout
        self._in_flight[delivery_id] = (queued, deadline)
        heapq.heappush(self._deadlines, (deadline, delivery_id))
        return QueueDelivery(delivery_id, queued.message, queued.attempts)

    def settle(self, delivery_id: str, *, requeue: bool) -> None:
        self._expire()  # an expired delivery is no longer in flight, even before it is handed out again
        entry = self._in_flight.pop(delivery_id, None)
        if entry is None:
            raise DeliveryNotFound(f"delivery {delivery_id!r} is not in flight on queue {self.name!r}")
        if requeue:
            heapq.heappush(self._ready, (entry[0].seq, entry[0]))

    def deadline_of(self, delivery_id: str) -> float | None:
        entry = self._in_flight.get(delivery_id)
        return None if entry is None else entry[1]

    def next_expiry(self) -> float | None:
        """When the earliest in-flight delivery times out (monotonic), if any is in flight."""
        while self._deadlines and self._deadlines[0][1] not in self._in_flight:
            heapq.heappop(self._deadlines)
        return self._deadlines[0][0] if self._deadlines else None

    def _expire(self) -> None:
        now = clocks.monotonic()
        while self._deadlines and self._deadlines[0][0] <= now:
            _, delivery_id = heapq.heappop(self._deadlines)
            entry = self._in_flight.pop(delivery_id, None)
            if entry is not None:
                heapq.heappush(self._ready, (entry[0].seq, entry[0]))


class _LogState:
    def __init__(self) -> None:
        self._records: list[Message] = []  # from offset _base on (truncation drops the front)
        self._base = 0

    @property
    def end(self) -> int:
        return self._base + len(self._records)

    def append(self, message: Message) -> int:
        self._records.append(message)
        return self.end - 1

    def read(self, offset: int, limit: int) -> list[Record]:
        start = max(offset, self._base)
        stop = min(self.end, start + limit)
        return [Record(i, self._records[i - self._base]) for i in range(start, stop)]

    def truncate(self, before: int) -> None:
        if before > self.end:
            raise ValueError(f"cannot truncate below {before}: the log ends at {self.end}")
        if before > self._base:
            del self._records[: before - self._base]
            self._base = before


@dataclass(frozen=True, slots=True)
class _StoredObject:
    data: bytes
    metadata: Mapping[str, str]
    expires_at: float | None  # unix time, as ObjectInfo reports it

    def info(self, bucket: str, key: str) -> ObjectInfo:
        return ObjectInfo(bucket, key, len(self.data), self.metadata, self.expires_at)


class _Bucket:
    def __init__(self, name: str) -> None:
        self.name = name
        self._objects: dict[str, _StoredObject] = {}

    def get(self, key: str) -> _StoredObject:
        stored = self._objects.get(key)
        if stored is not None and stored.expires_at is not None and stored.expires_at <= clocks.wall():
            del self._objects[key]  # expire lazily
            stored = None
        if stored is None:
            raise ObjectNotFound(self.name, key)
        return stored

    def put(self, key: str, stored: _StoredObject) -> ObjectInfo:
        self._objects[key] = stored
        return stored.info(self.name, key)

    def delete(self, key: str) -> None:
        self._objects.pop(key, None)

    def keys(self, prefix: str) -> list[str]:
        live = []
        for key in [k for k in self._objects if k.startswith(prefix)]:
            with contextlib.suppress(ObjectNotFound):
                self.get(key)
                live.append(key)
        return live


class _Store:
    """Everything one memstore instance holds."""

    def __init__(self) -> None:
        self.feed = MemFeed()
        self.kv = _KeyValueState(self.feed)
        self.queues: dict[str, _QueueState] = {}
        self.logs: dict[str, _LogState] = {}
        self.offsets: dict[tuple[str, str], int] = {}  # (log, group) -> committed offset
        # topic -> its subscriptions, in subscription order (dicts as ordered sets: a set's order
        # varies by run, and with it the order a publish wakes subscribers in under simulation)
        self.topics: dict[str, dict[_MemSubscription, None]] = {}
        self.buckets: dict[str, _Bucket] = {}
        self.signals = _Signals()  # "queue:<name>" and "log:<name>" wake waiting receivers

    def append(self, log: str, message: Message) -> int:
        offset = self.logs.setdefault(log, _LogState()).append(message)
        self.signals.notify(f"log:{log}")
        return offset

    def bucket(self, name: str) -> _Bucket:
        bucket = self.buckets.get(check_name(name, "bucket"))
        if bucket is None:
            raise BucketNotFound(name)
        return bucket

    def purge(self, prefix: str) -> None:
        for capture in [c for c in self.feed.captures if c.startswith(prefix)]:
            del self.feed.captures[capture]
        self.kv.purge(prefix)
        for table in (self.queues, self.logs, self.buckets):
            for name in [n for n in table if n.startswith(prefix)]:
                del table[name]
        for log, group in [lg for lg in self.offsets if lg[0].startswith(prefix) or lg[1].startswith(prefix)]:
            del self.offsets[(log, group)]
        for topic in [t for t in self.topics if t.startswith(prefix)]:
            for subscription in list(self.topics.get(topic, ())):
                subscription.detach()
            self.topics.pop(topic, None)

    def leftovers(self, prefix: str) -> list[str]:
        found = [f"kv:{key}" for key in self.kv.keys(prefix)]
        for kind, table in (("queue", self.queues), ("log", self.logs), ("topic", self.topics)):
            found += [f"{kind}:{name}" for name in table if name.startswith(prefix)]
        found += [f"bucket:{name}" for name in self.buckets if name.startswith(prefix)]
        found += [f"capture:{name}" for name in self.feed.captures if name.startswith(prefix)]
        found += [
            f"offset:{log}/{group}" for log, group in self.offsets if log.startswith(prefix) or group.startswith(prefix)
        ]
        return sorted(found)


T = TypeVar("T")

# One store per endpoint URL, for the life of the process.
_STORES: dict[str, _Store] = {}


# --- facets ----------------------------------------------------------------------------------


class _Facet:
    def __init__(self, driver: MemstoreDriver) -> None:
        self._driver = driver

    @property
    def _store(self) -> _Store:
        return self._driver.store


class _MemKeyValue(_Facet, KeyValue):
    async def get(self, key: str) -> bytes | None:
        return self._store.kv.get(key)

    async def put(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        if ttl is not None:
            self._driver.require(Capability.KEYVALUE_TTL, "put with a ttl")
            ttl = check_positive(ttl, "ttl")
        self._store.kv.put(key, as_bytes(value), ttl)
        await _answer()

    async def delete(self, key: str) -> bool:
        return self._store.kv.delete(key)

    async def exists(self, key: str) -> bool:
        return self._store.kv.version(key) != 0

    def scan(self, prefix: str) -> AsyncIterator[str]:
        self._driver.require(Capability.KEYVALUE_SCAN)  # at call time, not at first iteration
        return self._scan(prefix)

    async def _scan(self, prefix: str) -> AsyncIterator[str]:
        for key in self._store.kv.keys(prefix):  # a snapshot: writes while iterating are safe
            yield key

    async def compare_and_set(self, key: str, expected: bytes | None, new: bytes) -> bool:
        self._driver.require(Capability.KEYVALUE_CAS)
        new = as_bytes(new)
        if self._store.kv.get(key) != (None if expected is None else as_bytes(expected, "expected")):
            return False
        self._store.kv.put(key, new)
        await _answer()
        return True


class _MemSubscription(Subscription):
    def __init__(self, store: _Store, topic: str, owner: dict[_MemSubscription, None]) -> None:
        self._store = store
        self._topic = topic
        self._owner = owner  # the driver's open subscriptions, closed with the driver
        self._buffer: deque[Message] = deque()
        self._signal = _Signal()
        self._closed = False

    def deliver(self, message: Message) -> None:
        if not self._closed:
            self._buffer.append(message)
            self._signal.notify_all()

    async def receive(self, wait: float) -> Message | None:
        deadline = clocks.monotonic() + check_wait(wait)
        while True:
            if self._buffer:
                return self._buffer.popleft()
            remaining = deadline - clocks.monotonic()
            if self._closed or remaining <= 0:
                return None
            await self._signal.wait(remaining)

    async def close(self) -> None:
        self.detach()

    def detach(self) -> None:
        """Stop delivery and drop buffered messages (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._buffer.clear()
        self._owner.pop(self, None)
        subscribers = self._store.topics.get(self._topic)
        if subscribers is not None:
            subscribers.pop(self, None)
            if not subscribers:
                del self._store.topics[self._topic]
        self._signal.notify_all()  # a receive in progress returns None now


class _MemPubSub(_Facet, PubSub):
    async def publish(self, topic: str, message: Message) -> None:
        message = freeze_message(message)
        for subscription in list(self._store.topics.get(topic, ())):
            subscription.deliver(message)

    async def subscribe(self, topic: str) -> Subscription:
        store = self._store
        subscription = _MemSubscription(store, topic, self._driver.subscriptions)
        store.topics.setdefault(topic, {})[subscription] = None
        self._driver.subscriptions[subscription] = None
        return subscription


class _MemQueue(_Facet, Queue):
    async def send(self, queue: str, message: Message) -> str:
        store = self._store
        state = store.queues.get(queue)
        if state is None:
            state = store.queues[queue] = _QueueState(queue)
        message_id = state.send(freeze_message(message))
        store.signals.notify(f"queue:{queue}")
        await _answer()
        return message_id

    async def receive(self, queue: str, *, wait: float = 0.0, visibility_timeout: float = 30.0) -> QueueDelivery | None:
        visibility_timeout = check_positive(visibility_timeout, "visibility_timeout")
        deadline = clocks.monotonic() + check_wait(wait)
        while True:
            store = self._store
            state = store.queues.get(queue)  # looked up each time: a purge may replace it
            delivery = None if state is None else state.take(visibility_timeout)
            if delivery is not None:
                await _answer()  # lost: the message stays invisible until its timeout
                return delivery
            now = clocks.monotonic()
            timeout = deadline - now
            if timeout <= 0:
                return None
            expiry = None if state is None else state.next_expiry()
            if expiry is not None:  # wake when an in-flight message becomes available again
                timeout = min(timeout, expiry - now)
            await store.signals.wait(f"queue:{queue}", timeout)

    async def ack(self, queue: str, delivery: QueueDelivery) -> None:
        await self._at_deadline(queue, delivery)
        self._state(queue, delivery).settle(delivery.delivery_id, requeue=False)
        await _answer()

    async def nack(self, queue: str, delivery: QueueDelivery) -> None:
        await self._at_deadline(queue, delivery)
        self._state(queue, delivery).settle(delivery.delivery_id, requeue=True)
        self._store.signals.notify(f"queue:{queue}")
        await _answer()

    async def _at_deadline(self, queue: str, delivery: QueueDelivery) -> None:
        """Let a settle arrive exactly at the delivery's visibility deadline: it is then due
        again, and the settle is refused (DeliveryNotFound), as the contract allows."""
        state = self._store.queues.get(queue)
        deadline = None if state is None else state.deadline_of(delivery.delivery_id)
        if deadline is not None and buggify.fires(buggify.AT_DEADLINE):
            loop = asyncio.get_running_loop()
            woken: asyncio.Future[None] = loop.create_future()
            loop.call_at(deadline, _resolve, woken)  # at the deadline itself, not a float sum near it
            await woken

    def _state(self, queue: str, delivery: QueueDelivery) -> _QueueState:
        state = self._store.queues.get(queue)
        if state is None:
            raise DeliveryNotFound(f"delivery {delivery.delivery_id!r}: queue {queue!r} does not exist")
        return state


class _MemLog(_Facet, Log):
    async def append(self, log: str, message: Message) -> int:
        return self._store.append(log, freeze_message(message))

    async def read(self, log: str, offset: int, *, limit: int = 100, wait: float = 0.0) -> list[Record]:
        check_count(offset, "offset", 0)
        check_count(limit, "limit", 1)
        deadline = clocks.monotonic() + check_wait(wait)
        while True:
            store = self._store
            state = store.logs.get(log)
            records = [] if state is None else state.read(offset, limit)
            remaining = deadline - clocks.monotonic()
            if records or remaining <= 0:
                return records
            await store.signals.wait(f"log:{log}", remaining)

    async def end_offset(self, log: str) -> int:
        state = self._store.logs.get(log)
        return 0 if state is None else state.end

    async def truncate(self, log: str, before: int) -> None:
        check_count(before, "before", 0)
        state = self._store.logs.get(log)
        if state is None:
            if before > 0:
                raise ValueError(f"cannot truncate below {before}: log {log!r} is empty")
            return
        state.truncate(before)

    async def commit(self, log: str, group: str, offset: int) -> None:
        self._store.offsets[(log, group)] = check_count(offset, "offset", 0)

    async def committed(self, log: str, group: str) -> int | None:
        return self._store.offsets.get((log, group))


class _MemObjects(_Facet, ObjectStore):
    async def create_bucket(self, bucket: str) -> None:
        self._store.buckets.setdefault(check_name(bucket, "bucket"), _Bucket(bucket))

    async def delete_bucket(self, bucket: str) -> None:
        if self._store.bucket(bucket).keys(""):
            raise BucketNotEmpty(bucket)
        del self._store.buckets[bucket]

    async def bucket_exists(self, bucket: str) -> bool:
        return check_name(bucket, "bucket") in self._store.buckets

    async def put(
        self,
        bucket: str,
        key: str,
        data: bytes,
        *,
        metadata: Mapping[str, str] | None = None,
        ttl: float | None = None,
    ) -> ObjectInfo:
        stored = self._stored(as_bytes(data, "data"), metadata, ttl)
        return self._store.bucket(bucket).put(check_name(key, "key"), stored)

    async def put_stream(
        self,
        bucket: str,
        key: str,
        chunks: AsyncIterable[bytes],
        *,
        metadata: Mapping[str, str] | None = None,
        ttl: float | None = None,
    ) -> ObjectInfo:
        self._stored(b"", metadata, ttl)  # reject bad arguments before consuming the stream
        check_name(key, "key")
        self._store.bucket(bucket)
        body = bytearray()
        async for chunk in chunks:
            body += as_bytes(chunk, "chunk")
        # the expiry counts from the commit, and the bucket may have gone while streaming
        return self._store.bucket(bucket).put(key, self._stored(bytes(body), metadata, ttl))

    async def get(self, bucket: str, key: str) -> bytes:
        return self._store.bucket(bucket).get(key).data

    def get_stream(self, bucket: str, key: str, *, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        check_count(chunk_size, "chunk_size", 1)
        return self._stream(bucket, key, chunk_size)

    async def _stream(self, bucket: str, key: str, chunk_size: int) -> AsyncIterator[bytes]:
        data = self._store.bucket(bucket).get(key).data
        for start in range(0, len(data), chunk_size):
            yield data[start : start + chunk_size]

    async def delete(self, bucket: str, key: str) -> None:
        self._store.bucket(bucket).delete(key)

    async def exists(self, bucket: str, key: str) -> bool:
        try:
            self._store.bucket(bucket).get(key)
        except ObjectNotFound:
            return False
        return True

    async def info(self, bucket: str, key: str) -> ObjectInfo:
        return self._store.bucket(bucket).get(key).info(bucket, key)

    async def set_ttl(self, bucket: str, key: str, ttl: float) -> None:
        self._driver.require(Capability.OBJECTS_TTL)
        expires_at = clocks.wall() + check_positive(ttl, "ttl")
        target = self._store.bucket(bucket)
        stored = target.get(key)
        target.put(key, _StoredObject(stored.data, stored.metadata, expires_at))

    def list_keys(self, bucket: str, prefix: str = "") -> AsyncIterator[str]:
        return self._list_keys(bucket, prefix)

    async def _list_keys(self, bucket: str, prefix: str) -> AsyncIterator[str]:
        for key in self._store.bucket(bucket).keys(prefix):
            yield key

    def _stored(self, data: bytes, metadata: Mapping[str, str] | None, ttl: float | None) -> _StoredObject:
        expires_at = None
        if ttl is not None:
            self._driver.require(Capability.OBJECTS_TTL, "put with a ttl")
            expires_at = clocks.wall() + check_positive(ttl, "ttl")
        return _StoredObject(data, MappingProxyType(check_metadata(metadata)), expires_at)


class _MemTransaction(Transaction):
    """Staged writes with optimistic concurrency: a key read here that someone else changed
    before the commit aborts the commit, so read-modify-write never loses an update."""

    def __init__(self, store: _Store) -> None:
        self._store = store
        self._writes: dict[str, bytes | None] = {}  # None stages a delete
        # (log, message, (counter, header) when numbered at commit)
        self._appends: list[tuple[str, Message, tuple[str, str] | None]] = []
        self._read_versions: dict[str, int] = {}
        self._numbering = Numbering()
        self._open = True

    async def get(self, key: str) -> bytes | None:
        self._check_open()
        self._numbering.touch(key)
        if key in self._writes:
            return self._writes[key]
        self._read_versions.setdefault(key, self._store.kv.version(key))
        return self._store.kv.get(key)

    async def put(self, key: str, value: bytes) -> None:
        self._check_open()
        self._numbering.touch(key)
        self._writes[key] = as_bytes(value)

    async def delete(self, key: str) -> None:
        self._check_open()
        self._numbering.touch(key)
        self._writes[key] = None

    async def append(self, log: str, message: Message) -> None:
        self._check_open()
        self._appends.append((log, freeze_message(message), None))

    async def append_numbered(self, log: str, message: Message, *, counter: str, header: str) -> None:
        self._check_open()
        self._numbering.count(counter, header)
        self._appends.append((log, freeze_message(message), (counter, header)))

    def commit(self) -> None:
        """Apply every staged write with no await in between: atomic for other coroutines."""
        self._open = False
        kv = self._store.kv
        changed = sorted(k for k, v in self._read_versions.items() if kv.version(k) != v)
        if changed:
            raise TransactionAborted(f"keys read in the transaction changed before commit: {changed}")
        numbers: dict[str, int] = {}  # counter -> the last number given in this commit
        appends = []
        for log, message, numbering in self._appends:  # computed first: a bad counter applies nothing
            if numbering is not None:
                counter, header = numbering
                last = numbers.get(counter)
                numbers[counter] = next_number(counter, kv.get(counter)) if last is None else last + 1
                message = numbered(message, header, numbers[counter])
            appends.append((log, message))
        with self._store.feed.transaction():  # one change set for the whole commit
            for key, value in self._writes.items():
                if value is None:
                    kv.delete(key)
                else:
                    kv.put(key, value)
            for counter, number in numbers.items():
                kv.put(counter, str(number).encode())
        for log, message in appends:
            self._store.append(log, message)

    def rollback(self) -> None:
        self._open = False
        self._writes.clear()
        self._appends.clear()

    def _check_open(self) -> None:
        if not self._open:
            raise RuntimeError("the transaction has already ended")


class _MemTransactions(_Facet, Transactions):
    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        tx = _MemTransaction(self._store)
        try:
            yield tx
        except BaseException:
            tx.rollback()
            raise
        tx.commit()


# --- the locking mode (memstore-locking) -------------------------------------------------------


class _LockTable:
    """Shared and exclusive key locks of one store, held by an owner (a transaction, or one plain
    write) until it releases them all (strict two-phase locking). A wait that would close a
    cycle of owners waiting for each other is a deadlock: the requester is the victim."""

    def __init__(self) -> None:
        self.shared: dict[str, set[int]] = {}
        self.exclusive: dict[str, int] = {}
        self.waits_for: dict[int, set[int]] = {}
        self.waiters: list[asyncio.Future[None]] = []
        self.owners = itertools.count(1)

    def _blockers(self, owner: int, key: str, exclusive: bool) -> set[int]:
        holder = self.exclusive.get(key)
        found = {holder} if holder is not None and holder != owner else set()
        if exclusive:
            found |= self.shared.get(key, set()) - {owner}
        return found

    def _deadlocked(self, start: int) -> bool:
        seen: set[int] = set()
        stack = list(self.waits_for.get(start, ()))
        while stack:
            owner = stack.pop()
            if owner == start:
                return True
            if owner not in seen:
                seen.add(owner)
                stack.extend(self.waits_for.get(owner, ()))
        return False

    async def acquire(self, owner: int, key: str, *, exclusive: bool) -> None:
        """Wait until ``owner`` may hold ``key`` (no wait bound of its own: the caller's
        patience bounds it); raise :class:`TransactionAborted` on a deadlock."""
        while blockers := self._blockers(owner, key, exclusive):
            self.waits_for[owner] = blockers
            if self._deadlocked(owner):
                del self.waits_for[owner]
                raise TransactionAborted(f"deadlock on key {key!r}: this transaction was chosen as the victim")
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self.waiters.append(waiter)
            try:
                await waiter
            finally:
                self.waits_for.pop(owner, None)
        if exclusive:
            self.exclusive[key] = owner
        else:
            self.shared.setdefault(key, set()).add(owner)

    def release(self, owner: int) -> None:
        for key in [k for k, holder in self.exclusive.items() if holder == owner]:
            del self.exclusive[key]
        for key in [k for k, holders in self.shared.items() if owner in holders]:
            self.shared[key].discard(owner)
            if not self.shared[key]:
                del self.shared[key]
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:  # each looks again; one still blocked waits anew
            if not waiter.done():
                waiter.set_result(None)


_LOCKS: weakref.WeakKeyDictionary[_Store, _LockTable] = weakref.WeakKeyDictionary()  # each store's lock table


def _locks(store: _Store) -> _LockTable:
    return _LOCKS.setdefault(store, _LockTable())


class _LockingTransaction(_MemTransaction):
    """A read takes a shared lock, a write an exclusive one, all held until the end: a conflict
    makes a statement wait, and a deadlock aborts one (``TransactionAborted`` from the statement)."""

    def __init__(self, store: _Store) -> None:
        super().__init__(store)
        self.locks = _locks(store)
        self.owner = next(self.locks.owners)

    async def get(self, key: str) -> bytes | None:
        self._check_open()
        if key not in self._writes:
            await self.locks.acquire(self.owner, key, exclusive=False)
        return await super().get(key)

    async def put(self, key: str, value: bytes) -> None:
        self._check_open()
        await self.locks.acquire(self.owner, key, exclusive=True)
        await super().put(key, value)

    async def delete(self, key: str) -> None:
        self._check_open()
        await self.locks.acquire(self.owner, key, exclusive=True)
        await super().delete(key)


class _LockingTransactions(_MemTransactions):
    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        tx = _LockingTransaction(self._store)
        try:
            try:
                yield tx
            except BaseException:
                tx.rollback()
                raise
            tx.commit()
        finally:
            tx.locks.release(tx.owner)  # on every path, so a failed block leaves no lock behind


class _LockingKeyValue(_MemKeyValue):
    """Plain writes are transactions of their own: they wait for an open transaction's locks."""

    async def _exclusively(self, key: str, action: Callable[[], Awaitable[T]]) -> T:
        locks = _locks(self._store)
        owner = next(locks.owners)
        try:
            await locks.acquire(owner, key, exclusive=True)
            return await action()
        finally:
            locks.release(owner)

    async def put(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        await self._exclusively(key, lambda: _MemKeyValue.put(self, key, value, ttl=ttl))

    async def delete(self, key: str) -> bool:
        return await self._exclusively(key, lambda: _MemKeyValue.delete(self, key))

    async def compare_and_set(self, key: str, expected: bytes | None, new: bytes) -> bool:
        return await self._exclusively(key, lambda: _MemKeyValue.compare_and_set(self, key, expected, new))


class _MemChangeFeed(_Facet, ChangeFeed):
    async def create(self, capture: str, prefix: str) -> None:
        feed = self._store.feed
        existing = feed.captures.get(check_capture(capture))
        if existing is None:
            feed.captures[capture] = Capture(check_prefix(prefix))
        elif existing.prefix != prefix:
            raise other_prefix(capture, existing.prefix, prefix)
        else:
            feed.capture(capture)  # a lost one stays lost: only a drop starts it afresh

    async def read(self, capture: str, *, limit: int = 100, wait: float = 0.0) -> list[ChangeSet]:
        limit, wait = check_read(limit, wait)
        feed = self._store.feed
        feed.capture(check_capture(capture))

        async def attempt() -> list[ChangeSet]:
            return feed.read(capture, limit)

        return await poll(attempt, wait, FEED_POLL_INTERVAL)

    async def confirm(self, capture: str, position: int) -> None:
        self._store.feed.confirm(check_capture(capture), check_position(position))

    async def mark(self, capture: str, label: str) -> None:
        self._store.feed.mark(check_capture(capture), check_label(label))

    async def drop(self, capture: str) -> None:
        self._store.feed.captures.pop(check_capture(capture), None)

    async def captures(self, prefix: str) -> list[str]:
        return sorted(c for c in self._store.feed.captures if c.startswith(check_prefix(prefix)))

    async def lose_capture(self, capture: str, *, remade: bool = False) -> None:
        """Fault injection (:class:`~prism_testkit.interfaces.CaptureLoss`). The capture's record
        says it is lost, so fresh state in its place (``remade``) changes nothing here."""
        self._store.feed.lose(check_capture(capture))


# --- driver ----------------------------------------------------------------------------------


class MemstoreDriver(Driver):
    backend_name: ClassVar[str] = "memstore"

    def __init__(self, name: str, capabilities: frozenset[Capability], store: _Store) -> None:
        super().__init__(name, capabilities)
        self._store = store
        self._closed = False
        self.subscriptions: dict[_MemSubscription, None] = {}  # open ones, in order

    @classmethod
    async def connect(cls, name: str, capabilities: frozenset[Capability], endpoint: Endpoint) -> Self:
        return cls(name, capabilities, _STORES.setdefault(endpoint.url, _Store()))

    @property
    def store(self) -> _Store:
        if self._closed:
            raise RuntimeError(f"driver {self.name!r} is closed")
        return self._store

    async def close(self) -> None:
        self._closed = True
        for subscription in list(self.subscriptions):
            subscription.detach()

    async def purge(self, prefix: str) -> None:
        self.store.purge(prefix)

    async def leftovers(self, prefix: str) -> list[str]:
        return self.store.leftovers(prefix)

    def keyvalue(self) -> KeyValue:
        self.require(Capability.KEYVALUE)
        return _MemKeyValue(self)

    def pubsub(self) -> PubSub:
        self.require(Capability.PUBSUB)
        return _MemPubSub(self)

    def queue(self) -> Queue:
        self.require(Capability.QUEUE)
        return _MemQueue(self)

    def log(self) -> Log:
        self.require(Capability.LOG)
        return _MemLog(self)

    def objects(self) -> ObjectStore:
        self.require(Capability.OBJECTS)
        return _MemObjects(self)

    def transactions(self) -> Transactions:
        self.require(Capability.TRANSACTIONS)
        return _MemTransactions(self)

    def changefeed(self) -> ChangeFeed:
        self.require(Capability.CHANGEFEED)
        return _MemChangeFeed(self)


class MemstoreLockingDriver(MemstoreDriver):
    """memstore whose transactions lock instead of validating at commit: what a lock-based
    engine at serializable does (MariaDB's, SQL Server's), in process."""

    backend_name: ClassVar[str] = "memstore-locking"

    def keyvalue(self) -> KeyValue:
        self.require(Capability.KEYVALUE)
        return _LockingKeyValue(self)

    def transactions(self) -> Transactions:
        self.require(Capability.TRANSACTIONS)
        return _LockingTransactions(self)


def open_memstore(name: str = "memstore") -> MemstoreDriver:
    """A driver on a fresh, private store with every capability (no harness needed)."""
    return MemstoreDriver(name, ALL_CAPABILITIES, _Store())


@hookimpl
def prism_register_backends() -> list[BackendSpec]:
    return [
        BackendSpec(
            name="memstore",
            capabilities=ALL_CAPABILITIES,
            properties=PROPERTIES,
            provisioner=EmbeddedProvisioner("in this process"),
            driver=MemstoreDriver,
            embedded=True,
            simulable=True,
            description="in-process store implementing every interface; data lasts as long as the process",
        ),
        # Named to run (not in all): its rows differ from memstore's only where transactions
        # conflict, so they are asked for where that matters (the transaction suites).
        BackendSpec(
            name="memstore-locking",
            capabilities=ALL_CAPABILITIES,
            properties=PROPERTIES,
            provisioner=EmbeddedProvisioner("in this process"),
            driver=MemstoreLockingDriver,
            embedded=True,
            opt_in=True,
            description="memstore with lock-based transactions: shared read locks, exclusive write locks, "
            "deadlocks aborted (TransactionAborted from the statement)",
        ),
    ]
