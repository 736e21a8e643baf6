"""The Redis driver over :mod:`redis.asyncio` (one connection pool per driver), and
:class:`RedisSentinelDriver`, the same on a primary found through Sentinel. Every write goes
through :meth:`RedisDriver.write`, which can follow it with ``WAIT`` for replicas.

Interfaces: key-value (TTL via ``PX``, scan via ``SCAN MATCH`` with the prefix glob-escaped,
compare-and-set in a Lua script), pub/sub (PUBLISH / SUBSCRIBE: at-most-once and ephemeral),
a queue and a log over Redis Streams. No transactions (MULTI cannot roll back and cannot read
inside the unit) and no object store.

Key layout: ``prism:kv:<key>`` (string), ``prism:q:<queue>`` (stream with consumer group
``prism``), ``prism:log:<log>`` (stream), ``prism:lg:<log>`` (hash: group -> committed offset),
channel ``prism:ps:<topic>``.

Queue design (all state changes are Lua scripts, so each is atomic on the server):

* The visibility deadline of a pending entry is encoded in its PEL idle time: a hand-out sets
  ``IDLE = HORIZON - visibility_timeout`` (XCLAIM), so the entry reaches the idle time
  ``HORIZON`` exactly when its own timeout runs out; ``XPENDING ... IDLE HORIZON - + 1`` finds
  the first such entry and ``XCLAIM`` with min-idle-time ``HORIZON`` takes it over. So every
  hand-out carries its own timeout: a plain ``XAUTOCLAIM`` with min-idle-time = the caller's
  timeout would apply one receiver's timeout to another receiver's message. (XPENDING rather
  than XAUTOCLAIM because XAUTOCLAIM examines at most 10 x COUNT PEL entries per call: the
  cursor loop made every receive slow once thousands of messages were pending.)
* ``attempt`` is the entry's delivery count in the PEL; ``delivery_id`` is ``<entry-id>:<count>``,
  unique per hand-out because the count grows with every hand-out and stream IDs never repeat.
  Ack / nack check that the entry is still pending with that count and not nacked, otherwise
  they raise :class:`DeliveryNotFound`.
* ack = XACK + XDEL. nack = XCLAIM to the consumer ``~nacked`` with ``IDLE HORIZON`` (and the
  same count): immediately claimable again, in place (no re-add, so FIFO order by entry ID
  and the attempt count are kept), and the nacked delivery is recognisably over.
* Receive reclaims expired or nacked entries first (they all have lower IDs than any entry not
  yet delivered), then reads new ones with XREADGROUP: the lowest available ID wins, i.e. FIFO.

Log design: entries get explicit IDs ``0-<offset + 1>`` from ``XADD key 0-* ...`` (Redis >= 7
increments the sequence atomically), so offsets are dense, start at 0 and never change; reads
are ``XREAD [BLOCK] STREAMS key 0-<offset>`` (entries with a greater ID, i.e. from ``offset``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, Self

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub as RedisPubSubConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT, FieldT

from prism_testkit import patience
from prism_testkit.capabilities import Capability
from prism_testkit.driver import Driver
from prism_testkit.errors import ConnectionLost, DeliveryNotFound, PayloadTooLarge, ProvisioningError
from prism_testkit.interfaces import Message, QueueDelivery, Record
from prism_testkit.provision.base import Endpoint
from prism_testkit.redaction import redact

from .._common import (
    as_bytes,
    check_count,
    check_offset,
    check_positive,
    check_wait,
    freeze_message,
)
from . import MAX_PAYLOAD

ROOT = "prism"
GROUP = "prism"  # the one consumer group of every queue stream
CONSUMER = "prism"  # consumer identity does not matter: deliveries are tracked by id + count
NACKED = "~nacked"  # consumer that holds nacked entries until they are handed out again
HORIZON_MS = 10**12  # idle time (ms) at which a pending entry is available again (~31 years)
POLL_INTERVAL = 0.01  # seconds between receive attempts while a queue receive waits
SCAN_COUNT = 500
SUBSCRIBE_TIMEOUT = 10.0  # seconds to wait for the server to confirm a SUBSCRIBE
# how long a write waits for its replicas (redis-sentinel-wait); below the socket timeout
WAIT_TIMEOUT_MS = 2000
SENTINEL_TIMEOUT = 2.0  # seconds a Sentinel may take to answer (or to accept a connection)
# seconds a command's answer (or a connection) may take on a quiet machine: redis-py's default
# is a fixed 5 s, which a loaded machine outruns on a calm operation (then an unknown outcome)
SOCKET_TIMEOUT = 10.0

_SPECIAL_GLOB = re.compile(r"([\\*?\[\]])")
_DELIVERY_ID = re.compile(r"^(\d+-\d+):(\d+)$")
_FRAME = struct.Struct("!I")  # length of the JSON meta that precedes a pub/sub payload

# --- Lua scripts ---------------------------------------------------------------------------

# KEYS[1] stream; ARGV[1] group; ARGV[2..] field/value pairs. Group created with the stream
# (at ID 0, so it sees every entry); both exist from the first send on.
_SEND = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
end
return redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
"""

# KEYS[1] stream; ARGV group, consumer, horizon (ms), idle to set (ms) -> {id, count, fields}.
_RECEIVE = """
local s, g, c, horizon, idle = KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if redis.call('EXISTS', s) == 0 then return false end
while true do
  -- the first pending entry (in ID order) whose idle time reached the horizon: expired or nacked
  local p = redis.call('XPENDING', s, g, 'IDLE', horizon, '-', '+', 1)
  if #p == 0 then break end
  local id, n = p[1][1], p[1][4] + 1
  local e = redis.call('XCLAIM', s, g, c, horizon, id, 'IDLE', idle, 'RETRYCOUNT', n)
  if #e > 0 and type(e[1]) == 'table' and e[1][2] then return {id, n, e[1][2]} end
  redis.call('XACK', s, g, id)  -- its entry was deleted: drop it from the PEL
end
local r = redis.call('XREADGROUP', 'GROUP', g, c, 'COUNT', 1, 'STREAMS', s, '>')
if not r then return false end
local e = r[1][2][1]
redis.call('XCLAIM', s, g, c, 0, e[1], 'IDLE', idle, 'RETRYCOUNT', 1, 'JUSTID')
return {e[1], 1, e[2]}
"""

# KEYS[1] stream; ARGV group, entry id, count, nacked consumer, mode ('ack' | 'nack'), horizon.
_SETTLE = """
local s, g, id, n, nacked = KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if redis.call('EXISTS', s) == 0 then return 0 end
local p = redis.call('XPENDING', s, g, id, id, 1)
if #p == 0 or p[1][2] == nacked or tostring(p[1][4]) ~= n then return 0 end
if ARGV[5] == 'ack' then
  redis.call('XACK', s, g, id)
  redis.call('XDEL', s, id)
else
  redis.call('XCLAIM', s, g, nacked, 0, id, 'IDLE', ARGV[6], 'RETRYCOUNT', n, 'JUSTID')
end
return 1
"""

# KEYS[1] key; ARGV[1] '1' when a value is expected, ARGV[2] expected, ARGV[3] new value.
_CAS = """
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if current ~= ARGV[2] then return 0 end
elseif current then
  return 0
end
redis.call('SET', KEYS[1], ARGV[3])
return 1
"""


# --- helpers -------------------------------------------------------------------------------


def _key(kind: str, name: str) -> bytes:
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, not {type(name).__name__}")
    return f"{ROOT}:{kind}:{name}".encode()


def glob_escape(text: str) -> str:
    """``text`` as a Redis glob pattern that matches only itself."""
    return _SPECIAL_GLOB.sub(r"\\\1", text)


def _check_payload(message: Message) -> Message:
    stored = freeze_message(message)
    if len(stored.payload) > MAX_PAYLOAD:
        raise PayloadTooLarge(len(stored.payload), MAX_PAYLOAD)
    return stored


def _fields(message: Message) -> list[bytes]:
    """Stream entry fields: payload, headers as JSON, and the key only when there is one
    (so ``None`` and ``""`` stay distinct)."""
    stored = _check_payload(message)
    fields = [b"p", stored.payload, b"h", json.dumps(dict(stored.headers), sort_keys=True).encode()]
    if stored.key is not None:
        fields += [b"k", stored.key.encode()]
    return fields


def _from_fields(fields: dict[bytes, bytes] | list[bytes]) -> Message:
    if isinstance(fields, list):  # a flat [field, value, ...] list from a Lua reply
        fields = dict(zip(fields[::2], fields[1::2], strict=True))
    key = fields.get(b"k")
    return Message(bytes(fields[b"p"]), json.loads(fields[b"h"]), None if key is None else key.decode())


def _frame(message: Message) -> bytes:
    stored = _check_payload(message)
    meta = json.dumps({"h": dict(stored.headers), "k": stored.key}, sort_keys=True).encode()
    return _FRAME.pack(len(meta)) + meta + stored.payload


def _unframe(data: bytes) -> Message:
    (size,) = _FRAME.unpack_from(data)
    meta = json.loads(data[_FRAME.size : _FRAME.size + size])
    return Message(bytes(data[_FRAME.size + size :]), meta["h"], meta["k"])


def _text(value: bytes | str) -> str:
    """A name from a reply (redis-py types replies as bytes or str; ours are always bytes)."""
    return value.decode() if isinstance(value, bytes) else value


def _offset_of(entry_id: bytes | str) -> int:
    return int(_text(entry_id).split("-", 1)[1]) - 1


# --- facets --------------------------------------------------------------------------------


class RedisKeyValue:
    def __init__(self, driver: RedisDriver) -> None:
        self._driver = driver
        self._cas = driver.client.register_script(_CAS)

    async def get(self, key: str) -> bytes | None:
        with self._driver.guard():
            value = await self._driver.client.get(_key("kv", key))
        return None if value is None else as_bytes(value)

    async def put(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        name, data = _key("kv", key), as_bytes(value)
        px: int | None = None
        if ttl is not None:
            self._driver.require(Capability.KEYVALUE_TTL, "put with a ttl")
            px = max(1, math.ceil(check_positive(ttl, "ttl") * 1000))
        await self._driver.write(lambda c: c.set(name, data, px=px))  # a SET without PX clears any TTL

    async def delete(self, key: str) -> bool:
        return bool(await self._driver.write(lambda c: c.delete(_key("kv", key))))

    async def exists(self, key: str) -> bool:
        with self._driver.guard():
            return bool(await self._driver.client.exists(_key("kv", key)))

    def scan(self, prefix: str) -> AsyncIterator[str]:
        # A plain def, so an undeclared scan raises at the call, not at the first iteration.
        self._driver.require(Capability.KEYVALUE_SCAN, "scan")
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, not {type(prefix).__name__}")
        return self._scan(prefix)

    async def _scan(self, prefix: str) -> AsyncIterator[str]:
        strip = len(_key("kv", ""))
        async for raw in self._driver.scan_keys(f"{ROOT}:kv:{glob_escape(prefix)}*"):
            yield raw[strip:].decode()

    async def compare_and_set(self, key: str, expected: bytes | None, new: bytes) -> bool:
        self._driver.require(Capability.KEYVALUE_CAS, "compare_and_set")
        name, data = _key("kv", key), as_bytes(new, "new")
        args = [b"0", b"", data] if expected is None else [b"1", as_bytes(expected, "expected"), data]
        return bool(await self._driver.write(lambda c: self._cas(keys=[name], args=args, client=c)))


class RedisSubscription:
    """One SUBSCRIBE on its own connection; closed subscriptions never deliver."""

    def __init__(self, driver: RedisDriver, pubsub: RedisPubSubConnection) -> None:
        self._driver = driver
        self._pubsub = pubsub
        self._closed = False

    async def receive(self, wait: float) -> Message | None:
        loop_time = self._driver.loop_time
        deadline = loop_time() + check_wait(wait)
        while not self._closed:
            remaining = max(0.0, deadline - loop_time())
            with self._driver.guard():
                item = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=remaining)
            if item is not None and item.get("type") == "message":
                return _unframe(item["data"])
            if loop_time() >= deadline:
                return None
        return None

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._driver.subscriptions.discard(self)
        # Closing the connection ends the subscription on the server; no UNSUBSCRIBE needed.
        with contextlib.suppress(RedisError, OSError):
            await self._pubsub.aclose()


class RedisPubSub:
    def __init__(self, driver: RedisDriver) -> None:
        self._driver = driver

    async def publish(self, topic: str, message: Message) -> None:
        channel, data = _key("ps", topic), _frame(message)
        with self._driver.guard():
            await self._driver.client.publish(channel, data)

    async def subscribe(self, topic: str) -> RedisSubscription:
        channel = _key("ps", topic)
        pubsub = self._driver.client.pubsub()
        try:
            with self._driver.guard():
                await pubsub.subscribe(channel)
                # redis-py only sends SUBSCRIBE; wait for the server's confirmation, after which
                # every PUBLISH on the channel reaches this connection.
                loop_time = self._driver.loop_time
                deadline = loop_time() + SUBSCRIBE_TIMEOUT
                while True:
                    remaining = deadline - loop_time()
                    if remaining <= 0:
                        raise ConnectionLost(f"backend {self._driver.name!r}: SUBSCRIBE was not confirmed")
                    reply = await pubsub.get_message(timeout=remaining)
                    if reply is not None and reply.get("type") == "subscribe" and reply.get("channel") == channel:
                        break
        except BaseException:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()
            raise
        sub = RedisSubscription(self._driver, pubsub)
        self._driver.subscriptions.add(sub)
        return sub


class RedisQueue:
    def __init__(self, driver: RedisDriver) -> None:
        self._driver = driver
        self._send = driver.client.register_script(_SEND)
        self._receive = driver.client.register_script(_RECEIVE)
        self._settle = driver.client.register_script(_SETTLE)

    async def send(self, queue: str, message: Message) -> str:
        stream, fields = _key("q", queue), _fields(message)
        entry_id = await self._driver.write(lambda c: self._send(keys=[stream], args=[GROUP, *fields], client=c))
        return str(entry_id.decode())

    async def receive(self, queue: str, *, wait: float = 0.0, visibility_timeout: float = 30.0) -> QueueDelivery | None:
        stream = _key("q", queue)
        timeout_ms = max(1, math.ceil(check_positive(visibility_timeout, "visibility_timeout") * 1000))
        if timeout_ms >= HORIZON_MS:
            raise ValueError(f"visibility_timeout must be below {HORIZON_MS // 1000} seconds")
        wait = check_wait(wait)
        args: list[EncodableT] = [GROUP, CONSUMER, HORIZON_MS, HORIZON_MS - timeout_ms]
        loop_time = self._driver.loop_time
        deadline = loop_time() + wait
        while True:
            reply = await self._driver.write(lambda c: self._receive(keys=[stream], args=args, client=c))
            if reply:
                entry_id, count, fields = reply
                attempt = int(count)
                return QueueDelivery(f"{entry_id.decode()}:{attempt}", _from_fields(fields), attempt)
            remaining = deadline - loop_time()
            if remaining <= 0:
                return None
            await asyncio.sleep(min(POLL_INTERVAL, remaining))

    async def ack(self, queue: str, delivery: QueueDelivery) -> None:
        await self._settle_one(queue, delivery, "ack")

    async def nack(self, queue: str, delivery: QueueDelivery) -> None:
        await self._settle_one(queue, delivery, "nack")

    async def _settle_one(self, queue: str, delivery: QueueDelivery, mode: str) -> None:
        stream = _key("q", queue)
        match = _DELIVERY_ID.match(str(delivery.delivery_id))
        done = 0
        if match is not None:
            entry_id, count = match.groups()
            settle = [GROUP, entry_id, count, NACKED, mode, HORIZON_MS]
            done = await self._driver.write(lambda c: self._settle(keys=[stream], args=settle, client=c))
        if not done:
            raise DeliveryNotFound(f"queue {queue!r} holds no delivery {delivery.delivery_id!r} to {mode}")


class RedisLog:
    def __init__(self, driver: RedisDriver) -> None:
        self._driver = driver

    async def append(self, log: str, message: Message) -> int:
        stream, fields = _key("log", log), _fields(message)
        pairs: dict[FieldT, EncodableT] = dict(zip(fields[::2], fields[1::2], strict=True))
        # ms = 0, sequence auto-incremented by the server: 0-1, 0-2, ... (Redis >= 7)
        entry_id = await self._driver.write(lambda c: c.xadd(stream, pairs, id="0-*"))
        return _offset_of(entry_id)

    async def read(self, log: str, offset: int, *, limit: int = 100, wait: float = 0.0) -> list[Record]:
        stream = _key("log", log)
        check_offset(offset)
        check_count(limit, "limit", 1)
        wait = check_wait(wait)
        # XREAD returns entries with an ID greater than the one given: 0-<offset> means "from
        # offset on". BLOCK 0 would wait forever, so a positive wait is at least 1 ms.
        block = max(1, math.ceil(wait * 1000)) if wait > 0 else None
        with self._driver.guard():
            reply: Any = await self._driver.client.xread({stream: f"0-{offset}"}, count=limit, block=block)
        if not reply:
            return []
        (_, entries), *_ = reply
        return [Record(_offset_of(entry_id), _from_fields(fields)) for entry_id, fields in entries]

    async def end_offset(self, log: str) -> int:
        with self._driver.guard():
            # Entries are never deleted one by one, so the length is the next offset.
            return int(await self._driver.client.xlen(_key("log", log)))

    async def commit(self, log: str, group: str, offset: int) -> None:
        check_offset(offset)
        if not isinstance(group, str):
            raise TypeError(f"group must be a str, not {type(group).__name__}")
        await self._driver.write(lambda c: c.hset(_key("lg", log), group, str(offset)))

    async def committed(self, log: str, group: str) -> int | None:
        with self._driver.guard():
            value = await self._driver.client.hget(_key("lg", log), group)
        return None if value is None else int(value)


# --- the driver ----------------------------------------------------------------------------


class RedisDriver(Driver):
    backend_name = "redis"

    def __init__(self, name: str, capabilities: frozenset[Capability], client: aioredis.Redis) -> None:
        super().__init__(name, capabilities)
        self.client = client
        self.wait_replicas = 0  # replicas each write waits for (WAIT); 0: none
        self.sentinel: Sentinel | None = None  # closed with the driver
        self.subscriptions: set[RedisSubscription] = set()
        self._closed = False
        self._keyvalue = RedisKeyValue(self)
        self._pubsub = RedisPubSub(self)
        self._queue = RedisQueue(self)
        self._log = RedisLog(self)

    @staticmethod
    def loop_time() -> float:
        return asyncio.get_running_loop().time()

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """Report a broken connection as ConnectionLost (the outcome is unknown); redis-py's
        own retries are off, so a write is never silently sent twice."""
        if self._closed:
            # An operation its client abandoned may run on after a restart closed this driver;
            # the pool would open a new connection that nobody closes.
            raise ConnectionLost(f"backend {self.name!r}: this Redis driver was closed")
        try:
            yield
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise ConnectionLost(redact(f"backend {self.name!r}: connection to Redis lost: {exc}")) from exc
        except ReadOnlyError as exc:  # a direct connection to a primary that a failover demoted
            raise ConnectionLost(redact(f"backend {self.name!r}: the server is a replica now: {exc}")) from exc

    async def write(self, command: Callable[[Any], Awaitable[Any]]) -> Any:
        """Run one write command (``command`` issues it on the client it is given). With
        ``wait_replicas``, ``WAIT`` follows it on the same connection (one pipeline): the write
        counts as done only once that many replicas have it. Fewer within the timeout: the write
        is on the primary alone, and whether it outlives a failover is unknown (ConnectionLost)."""
        if not self.wait_replicas:
            with self.guard():
                return await command(self.client)
        with self.guard():
            async with self.client.pipeline(transaction=False) as pipe:
                await command(pipe)
                pipe.execute_command("WAIT", self.wait_replicas, WAIT_TIMEOUT_MS)
                result, confirmed = await pipe.execute()
        if int(confirmed) < self.wait_replicas:
            raise ConnectionLost(
                f"backend {self.name!r}: {confirmed} of {self.wait_replicas} replica(s) confirmed a write within "
                f"{WAIT_TIMEOUT_MS} ms; it is on the primary only, so a failover may lose it"
            )
        return result

    @classmethod
    async def connect(cls, name: str, capabilities: frozenset[Capability], endpoint: Endpoint) -> Self:
        client, sentinel = cls._client(name, endpoint)
        driver = cls(name, capabilities, client)
        driver.sentinel = sentinel
        driver.wait_replicas = int(endpoint.options.get("wait_replicas", 0))
        try:
            await client.ping()
            info = await client.info("server")
            if tuple(int(p) for p in str(info.get("redis_version", "0")).split(".")[:2]) < (7, 0):
                raise ProvisioningError(f"backend {name!r}: needs Redis >= 7.0, server is {info.get('redis_version')}")
            if endpoint.options.get("require_durable"):
                await _check_durable(name, client)
        except (RedisError, OSError) as exc:
            await driver.close()
            raise ProvisioningError(
                redact(f"backend {name!r}: cannot connect to {endpoint.url}: {type(exc).__name__}: {exc}")
            ) from None
        except BaseException:
            await driver.close()
            raise
        driver.server_version = str(info.get("redis_version"))
        return driver

    @staticmethod
    def _client(name: str, endpoint: Endpoint) -> tuple[aioredis.Redis, Sentinel | None]:
        """The client, and the Sentinel manager it finds its server through (if any)."""
        try:
            timeout = SOCKET_TIMEOUT * patience.slowness()  # a URL's own socket_timeout wins
            pool = aioredis.ConnectionPool.from_url(
                endpoint.url, retry=Retry(NoBackoff(), 0), socket_timeout=timeout, socket_connect_timeout=timeout
            )
        except ValueError as exc:
            raise ProvisioningError(redact(f"backend {name!r}: bad Redis URL {endpoint.url}: {exc}")) from None
        return aioredis.Redis(connection_pool=pool), None

    async def close(self) -> None:
        self._closed = True
        for sub in list(self.subscriptions):
            await sub.close()
        with contextlib.suppress(RedisError, OSError):
            await self.client.aclose(close_connection_pool=True)
        if self.sentinel is not None:
            with contextlib.suppress(RedisError, OSError):
                await self.sentinel.aclose()

    def keyvalue(self) -> RedisKeyValue:
        return self._keyvalue

    def pubsub(self) -> RedisPubSub:
        return self._pubsub

    def queue(self) -> RedisQueue:
        return self._queue

    def log(self) -> RedisLog:
        return self._log

    async def scan_keys(self, pattern: str) -> AsyncIterator[bytes]:
        """Keys matching ``pattern``, each once (SCAN may return a key twice)."""
        seen: set[bytes] = set()
        with self.guard():
            async for raw in self.client.scan_iter(match=pattern, count=SCAN_COUNT):
                if raw not in seen:
                    seen.add(raw)
                    yield raw

    async def _named(self, prefix: str) -> tuple[list[tuple[str, bytes]], list[tuple[bytes, bytes]]]:
        """(kind, key) of everything named with ``prefix``, and (group hash, field) of group
        offsets whose group name (on a log outside the prefix) starts with ``prefix``."""
        escaped = glob_escape(prefix)
        keys: list[tuple[str, bytes]] = []
        for kind in ("kv", "q", "log", "lg"):
            keys += [(kind, raw) async for raw in self.scan_keys(f"{ROOT}:{kind}:{escaped}*")]
        fields: list[tuple[bytes, bytes]] = []
        async for raw in self.scan_keys(f"{ROOT}:lg:*"):
            if raw.startswith(_key("lg", prefix)):
                continue
            with self.guard():
                fields += [(raw, f) async for f, _ in self.client.hscan_iter(raw, match=f"{escaped}*")]
        return keys, fields

    async def purge(self, prefix: str) -> None:
        keys, fields = await self._named(prefix)
        with self.guard():
            if keys:
                await self.client.unlink(*(raw for _, raw in keys))
            for raw, field in fields:
                await self.client.hdel(raw, field)

    async def leftovers(self, prefix: str) -> list[str]:
        keys, fields = await self._named(prefix)
        found: list[str] = []
        labels = {"kv": "kv", "q": "queue", "log": "log"}
        for kind, raw in keys:
            name = raw[len(_key(kind, "")) :].decode()
            if kind in labels:
                found.append(f"{labels[kind]}:{name}")
            else:
                with self.guard():
                    groups = await self.client.hkeys(raw)
                found += [f"group:{name}/{_text(g)}" for g in groups]
        for raw, field in fields:
            found.append(f"group:{raw[len(_key('lg', '')) :].decode()}/{field.decode()}")
        return sorted(found)


async def _check_durable(name: str, client: aioredis.Redis) -> None:
    """Refuse a server given by URL for a durable registration when it says it is not."""
    try:
        config = await client.config_get("append*")
    except ResponseError:
        return  # CONFIG is disabled (managed Redis): the URL's owner vouches for durability
    settings = {k.decode() if isinstance(k, bytes) else k: v for k, v in config.items()}
    appendonly = settings.get("appendonly", b"")
    fsync = settings.get("appendfsync", b"")
    if (appendonly, fsync) not in {(b"yes", b"always"), ("yes", "always")}:
        raise ProvisioningError(
            f"backend {name!r} is declared durable, but the server runs with appendonly={appendonly!r}, "
            f"appendfsync={fsync!r} (needs appendonly=yes, appendfsync=always)"
        )


class RedisSentinelDriver(RedisDriver):
    """The Redis driver on a primary it finds through Sentinel (``redis+sentinel://host:port,
    host:port/service``): redis-py's ``Sentinel`` asks the Sentinels for the primary's address
    whenever it opens a connection, and drops a connection whose server turned into a replica,
    so after a failover the next connection reaches the new primary. Given a plain ``redis://``
    URL (the primary through a fault proxy) it connects there directly, as :class:`RedisDriver`."""

    backend_name = "redis-sentinel"

    @staticmethod
    def _client(name: str, endpoint: Endpoint) -> tuple[aioredis.Redis, Sentinel | None]:
        scheme, _, rest = endpoint.url.partition("://")
        if scheme in ("redis", "rediss"):
            return RedisDriver._client(name, endpoint)
        hosts, _, service = rest.partition("/")
        try:
            if scheme != "redis+sentinel" or not service:
                raise ValueError("expected redis+sentinel://host:port[,host:port...]/service")
            sentinels = [(h.rpartition(":")[0], int(h.rpartition(":")[2])) for h in hosts.split(",")]
        except ValueError as exc:
            raise ProvisioningError(redact(f"backend {name!r}: bad Sentinel URL {endpoint.url}: {exc}")) from None
        no_retry = Retry(NoBackoff(), 0)
        asked = SENTINEL_TIMEOUT * patience.slowness()
        sentinel = Sentinel(
            sentinels,
            sentinel_kwargs={"socket_timeout": asked, "socket_connect_timeout": asked, "retry": no_retry},
            socket_connect_timeout=asked,
            socket_timeout=SOCKET_TIMEOUT * patience.slowness(),
            retry=no_retry,
        )
        client: aioredis.Redis = sentinel.master_for(service.strip("/"))
        return client, sentinel
