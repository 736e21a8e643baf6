"""The messaging interfaces JetStream stores: key-value, queue and log, each a facet of the
driver written over the JetStream client (which creates their streams and sends their requests).
Together because they share that client's stream layout and the key-value bucket of log
offsets; pub/sub, which stores nothing, is in :mod:`.pubsub`, the object store in
:mod:`.objects`.

* queue: stream ``prism-q-<queue>`` (subject ``prism.q.<queue>``, WorkQueue retention, file
  storage) with one durable pull consumer ``prism`` (explicit ack, ``ack_wait`` 30 s, unlimited
  redeliveries). Each receive is one pull request for one message (``no_wait`` or ``expires``).

  - visibility timeout: ``ack_wait`` is per consumer, so a hand-out whose timeout differs from
    it is immediately answered with ``-NAK {"delay": timeout}``, confirmed by the server. The
    server keeps the message pending and redelivers it when that delay runs out; a ``+ACK``
    before then still settles it. (With a 30 s timeout no extra request is sent.) When the
    confirmation fails the receive raises :class:`ConnectionLost`, and the message it may have
    taken reappears after ``ack_wait`` at the latest: the stateful queue suite found that an
    unconfirmed ``-NAK`` lost to a connection reset hid a message for 30 s behind a successful
    receive. A server restart forgets the delay too: a message held when the server was killed
    comes back after ``ack_wait`` (measured: 29 s), not after its own visibility timeout.
  - a pull the server did not answer in time (it answers every pull: a message, or a 404 / 408
    status) raises :class:`ConnectionLost`, not "no message": the server may still hand a
    message to it after the client stopped listening, and keep it pending for ``ack_wait``.
    The stateful queue suite's hunt found it with the server paused during a receive.
  - ``attempt`` is the consumer's delivery count; ``delivery_id`` is unique per hand-out.
    The driver tracks the deliveries it handed out and their deadlines (measured from the
    moment the pull was sent, so never later than the server's): an ack / nack of a delivery
    that was settled, or whose deadline passed, raises :class:`DeliveryNotFound`. Hence a
    delivery is settled through the driver that received it.
  - ack / nack are confirmed by the server (double ack). nack is a plain ``-NAK``: redelivered
    at once.
  - deduplication: a message with the header ``prism-message-id`` is published with
    ``Nats-Msg-Id`` set to it, so a resend within the stream's duplicate window (2 minutes) is
    dropped by the server and ``send`` returns the original's sequence.
* log: stream ``prism-log-<log>`` (subject ``prism.log.<log>``, Limits retention). Offsets are
  stream sequence - 1 (dense: nothing is ever deleted from a log stream). Reads fetch by
  sequence; a waiting read listens on the subject and re-checks. Group offsets live in the
  KV bucket ``prism-log-offsets`` under ``<log>.<group>``.
* key-value: one KV bucket ``prism-kv`` (history 1). Keys are mapped by :func:`.codec.token`;
  delete purges the key's subject (no delete markers pile up), compare-and-set publishes with
  ``Nats-Expected-Last-Subject-Sequence``; scan lists the bucket's subjects. No TTL: per-message
  TTL needs nats-server 2.11 and the installed server is older (a bucket-wide max_age is not a
  per-key TTL), so ``keyvalue.ttl`` is not declared.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from nats.aio.msg import Msg

from prism_testkit.capabilities import Capability
from prism_testkit.errors import DeliveryNotFound
from prism_testkit.interfaces import MESSAGE_ID_HEADER, Message, QueueDelivery, Record

from .._common import as_bytes, check_count, check_offset, check_positive, check_wait
from .client import unsubscribed
from .codec import control_status, decode, encode, named, token, untoken
from .jetstream import (
    ACK_WAIT,
    API_TIMEOUT,
    ERR_WRONG_LAST_SEQ,
    EXPECTED_LAST_SUBJECT_SEQ,
    LOG_STREAM,
    NATS_MSG_ID,
    QUEUE_STREAM,
    ApiError,
    JetStream,
)

KV_BUCKET = "prism-kv"
OFFSETS_BUCKET = "prism-log-offsets"
MSG_ID_HEADER = MESSAGE_ID_HEADER


def _loop_time() -> float:
    return asyncio.get_running_loop().time()


class NatsKeyValue:
    """One KV bucket; see the module docstring. ``require`` raises for an undeclared capability."""

    def __init__(self, js: JetStream, require: Callable[[Capability, str], None]) -> None:
        self._js = js
        self._require = require

    def _subject(self, key: str) -> str:
        return f"$KV.{KV_BUCKET}.{named(key, 'key')}"

    async def _current(self, subject: str) -> tuple[int, bytes | None]:
        """(sequence of the subject's last message or 0, its value or None when absent)."""
        stored = await self._js.last_msg_direct(f"KV_{KV_BUCKET}", subject)
        if stored is None:
            return 0, None
        if stored.headers.get("KV-Operation") in {"DEL", "PURGE"}:  # markers other clients write
            return stored.seq, None
        return stored.seq, stored.data

    async def get(self, key: str) -> bytes | None:
        return (await self._current(self._subject(key)))[1]

    async def put(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        subject, data = self._subject(key), as_bytes(value)
        if ttl is not None:
            self._require(Capability.KEYVALUE_TTL, "put with a ttl")
        await self._js.ensure_kv(KV_BUCKET)
        await self._js.publish(subject, data)

    async def delete(self, key: str) -> bool:
        subject = self._subject(key)
        seq, value = await self._current(subject)
        if seq == 0:
            return False
        purged = await self._js.purge_subject(f"KV_{KV_BUCKET}", subject)
        return purged > 0 and value is not None

    async def exists(self, key: str) -> bool:
        return await self.get(key) is not None

    def scan(self, prefix: str) -> AsyncIterator[str]:
        # A plain def, so an undeclared scan raises at the call, not at the first iteration.
        self._require(Capability.KEYVALUE_SCAN, "scan")
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, not {type(prefix).__name__}")
        return self._scan(prefix)

    async def _scan(self, prefix: str) -> AsyncIterator[str]:
        for key in await self._keys(prefix):
            yield key

    async def _keys(self, prefix: str) -> list[str]:
        start = len(f"$KV.{KV_BUCKET}.")
        encoded = token(prefix)
        keys = []
        for subject in await self._js.subjects(f"KV_{KV_BUCKET}", f"$KV.{KV_BUCKET}.>"):
            if subject[start:].startswith(encoded):
                keys.append(subject)
        # Markers written by other clients do not count as keys.
        values = await asyncio.gather(*(self.get(untoken(s[start:])) for s in keys))
        return [untoken(s[start:]) for s, v in zip(keys, values, strict=True) if v is not None]

    async def compare_and_set(self, key: str, expected: bytes | None, new: bytes) -> bool:
        self._require(Capability.KEYVALUE_CAS, "compare_and_set")
        subject, data = self._subject(key), as_bytes(new, "new")
        want = None if expected is None else as_bytes(expected, "expected")
        await self._js.ensure_kv(KV_BUCKET)
        while True:
            seq, current = await self._current(subject)
            if current != want:
                return False
            try:
                await self._js.publish(subject, data, {EXPECTED_LAST_SUBJECT_SEQ: str(seq)})
                return True
            except ApiError as exc:
                if exc.err_code not in ERR_WRONG_LAST_SEQ:
                    raise
                # Someone wrote in between: look again (the value may still be the expected one).


@dataclass
class _Pending:
    queue: str
    reply: str
    deadline: float  # loop time after which the server may hand the message out again


class NatsQueue:
    def __init__(self, js: JetStream) -> None:
        self._js = js
        self._pending: dict[str, _Pending] = {}
        self._ids = itertools.count(1)

    async def send(self, queue: str, message: Message) -> str:
        name = named(queue, "queue")
        payload, headers = encode(message)
        msg_id = dict(message.headers).get(MSG_ID_HEADER)
        if msg_id:  # the caller's id: a resend of the same message is stored once (queue.dedup)
            headers = {**(headers or {}), NATS_MSG_ID: msg_id}
        await self._js.ensure_queue(name)
        seq = await self._js.publish(f"prism.q.{name}", payload, headers, ensure=("queue", name))
        return str(seq)

    async def receive(self, queue: str, *, wait: float = 0.0, visibility_timeout: float = 30.0) -> QueueDelivery | None:
        name = named(queue, "queue")
        timeout = check_positive(visibility_timeout, "visibility_timeout")
        wait = check_wait(wait)
        deadline = _loop_time() + wait
        self._forget_expired()
        await self._js.ensure_queue(name)
        while True:
            remaining = deadline - _loop_time()
            sent_at = _loop_time()
            msg = await self._js.pull(QUEUE_STREAM + name, remaining)
            if control_status(msg) is None and msg.reply:
                return await self._hand_out(queue, msg, sent_at, visibility=timeout)
            if control_status(msg) in {"409", "503"}:  # consumer gone (purged meanwhile)
                self._js.forget(QUEUE_STREAM + name)
                await self._js.ensure_queue(name)
            if _loop_time() >= deadline:
                return None
            await asyncio.sleep(0.005)

    async def _hand_out(self, queue: str, msg: Msg, sent_at: float, *, visibility: float) -> QueueDelivery:
        meta = msg.metadata
        if not math.isclose(visibility, ACK_WAIT):
            # Per-delivery visibility: the server keeps the message pending and redelivers it
            # after ``timeout``; an ack before then still settles it.
            # Confirmed (double ack): if it never reached the server, the message would stay
            # hidden for the full ack_wait, so the receive must not report success.
            with self._js.guard():
                await self._js.nc.request(
                    msg.reply, f'-NAK {{"delay": {int(visibility * 1e9)}}}'.encode(), timeout=API_TIMEOUT
                )
        delivery_id = f"{meta.sequence.stream}:{meta.num_delivered}:{next(self._ids)}"
        self._pending[delivery_id] = _Pending(queue, msg.reply, sent_at + visibility)
        return QueueDelivery(delivery_id, decode(msg.data, msg.headers), meta.num_delivered)

    def _forget_expired(self) -> None:
        now = _loop_time()
        for delivery_id in [d for d, p in self._pending.items() if p.deadline <= now]:
            del self._pending[delivery_id]

    def _take(self, queue: str, delivery: QueueDelivery, mode: str) -> _Pending:
        delivery_id = str(delivery.delivery_id)
        pending = self._pending.get(delivery_id)
        if pending is None or pending.queue != queue:
            raise DeliveryNotFound(f"queue {queue!r} holds no delivery {delivery_id!r} to {mode}")
        del self._pending[delivery_id]
        if _loop_time() >= pending.deadline:
            raise DeliveryNotFound(f"delivery {delivery_id!r} on queue {queue!r} ran past its visibility timeout")
        return pending

    async def ack(self, queue: str, delivery: QueueDelivery) -> None:
        pending = self._take(queue, delivery, "ack")
        with self._js.guard():
            await self._js.nc.request(pending.reply, b"+ACK", timeout=API_TIMEOUT)

    async def nack(self, queue: str, delivery: QueueDelivery) -> None:
        pending = self._take(queue, delivery, "nack")
        with self._js.guard():
            await self._js.nc.request(pending.reply, b"-NAK", timeout=API_TIMEOUT)

    def forget_prefix(self, prefix: str) -> None:
        for delivery_id in [d for d, p in self._pending.items() if p.queue.startswith(prefix)]:
            del self._pending[delivery_id]


class NatsLog:
    def __init__(self, js: JetStream) -> None:
        self._js = js

    async def append(self, log: str, message: Message) -> int:
        name = named(log, "log")
        payload, headers = encode(message)
        await self._js.ensure_log(name)
        seq = await self._js.publish(f"prism.log.{name}", payload, headers, ensure=("log", name))
        return seq - 1

    async def read(self, log: str, offset: int, *, limit: int = 100, wait: float = 0.0) -> list[Record]:
        name = named(log, "log")
        check_offset(offset)
        check_count(limit, "limit", 1)
        wait = check_wait(wait)
        stream = LOG_STREAM + name
        if wait == 0:
            return await self._fetch(stream, offset, limit)
        deadline = _loop_time() + wait
        # Listen before looking: an append stored after the look is announced on the subject.
        arrivals: asyncio.Queue[None] = asyncio.Queue()

        async def announce(_msg: Msg) -> None:
            arrivals.put_nowait(None)

        with self._js.guard():
            sub = await self._js.nc.subscribe(f"prism.log.{name}", cb=announce)
        try:
            while True:
                records = await self._fetch(stream, offset, limit)
                remaining = deadline - _loop_time()
                if records or remaining <= 0:
                    return records
                try:
                    await asyncio.wait_for(arrivals.get(), remaining)
                except TimeoutError:
                    return await self._fetch(stream, offset, limit)
                # The announcement may outrun the store: look again for a little while.
                while not arrivals.empty():
                    arrivals.get_nowait()
                for _ in range(20):
                    records = await self._fetch(stream, offset, limit)
                    if records or _loop_time() >= deadline:
                        return records
                    await asyncio.sleep(0.005)
        finally:
            await unsubscribed(sub)

    async def _fetch(self, stream: str, offset: int, limit: int) -> list[Record]:
        # The first record alone answers a read at the end of the log and a read of one: one
        # request, not a stream info first (nothing is deleted, so a missing one is the end).
        head = await self._js.msg_by_seq(stream, offset + 1)
        if head is None:
            return []
        stored = [head]
        if limit > 1:
            end = min(await self._js.last_seq(stream), offset + limit)
            more = await asyncio.gather(*(self._js.msg_by_seq(stream, seq) for seq in range(offset + 2, end + 1)))
            stored += [m for m in more if m is not None]
        return [Record(m.seq - 1, decode(m.data, m.headers)) for m in stored]

    async def end_offset(self, log: str) -> int:
        return await self._js.last_seq(LOG_STREAM + named(log, "log"))

    def _group_subject(self, log: str, group: str) -> str:
        return f"$KV.{OFFSETS_BUCKET}.{named(log, 'log')}.{named(group, 'group')}"

    async def commit(self, log: str, group: str, offset: int) -> None:
        check_offset(offset)
        subject = self._group_subject(log, group)
        await self._js.ensure_kv(OFFSETS_BUCKET)
        await self._js.publish(subject, str(offset).encode())

    async def committed(self, log: str, group: str) -> int | None:
        stored = await self._js.last_msg_direct(f"KV_{OFFSETS_BUCKET}", self._group_subject(log, group))
        return None if stored is None else int(stored.data)
