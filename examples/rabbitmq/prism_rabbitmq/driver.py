"""The RabbitMQ driver (aio-pika): a durable queue and pub/sub over AMQP 0-9-1.

How the interfaces map onto AMQP, and why:

* **queue**: one classic durable queue per name, persistent messages, sent through a channel
  with publisher confirms (``send`` returns once the broker wrote the message to disk).
  ``receive`` polls ``basic.get``; the visibility timeout is a timer in this driver.
* **ack is confirmed**: AMQP's ``basic.ack`` has no reply, so returning right after sending
  it would let a consumer believe it settled a message the broker never saw (a lost ack is a
  redelivery after ``ack()`` returned). The consumer channel is transactional: ``ack`` sends
  ``basic.ack``, then ``tx.commit`` and a passive ``queue.declare`` of the same queue, whose
  reply the queue process sends after it handled the ack (Erlang keeps the order of messages
  between two processes). ``ack()`` returns when the broker applied it, not before.
* **nack and expiry** publish a copy with the next attempt number and ack the original in one
  transaction (one queue, so atomic): AMQP's requeue has only a boolean ``redelivered`` flag,
  and the interface counts attempts. The copy joins the tail of the queue.
* **stale deliveries**: every hand-out gets an id naming this driver and its channel; an ack
  or nack of an id that is no longer pending here (settled, expired, purged, received by
  another driver, or on a channel that closed, whose deliveries the broker took back) raises
  ``DeliveryNotFound`` and changes nothing.
* **pubsub**: one direct exchange; a subscription is an exclusive, auto-deleted queue bound
  with the topic as routing key, consumed without acks (at most once).

Names this run declares are kept in a registry shared by every driver instance of one
provisioned server (``Endpoint.options["registry"]``): AMQP cannot list queues, and the harness
purges with whichever driver instance it holds (proxied, reconnected after a restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Self

import aio_pika
import aiormq.exceptions
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    ConsumerTag,
    DeliveryMode,
)

from prism_testkit import Capability, Driver, Endpoint, Message, QueueDelivery
from prism_testkit.errors import ConnectionLost, DeliveryNotFound, PayloadTooLarge

from .provision import MAX_PAYLOAD, NAME_PUNCTUATION

ATTEMPT_HEADER = "x-prism-attempt"  # reserved: the attempt number a copy starts with
PUBSUB_EXCHANGE = "prism-testkit.pubsub"
POLL_INTERVAL = 0.02  # s between two basic.get of a waiting receive
CONNECT_TIMEOUT = 10.0
CLOSE_TIMEOUT = 5.0

# Errors that mean the connection or channel broke: the outcome of the operation is unknown.
BROKEN = (aiormq.exceptions.AMQPError, ConnectionError, OSError, RuntimeError)

# The AMQP 0-9-1 queue-name grammar as the client library checks it; the registration declares
# the same characters (its name_characters) so the names suite draws from them.
QUEUE_NAME = re.compile(f"[a-zA-Z0-9{re.escape(NAME_PUNCTUATION)}]*")
MAX_QUEUE_NAME = 255  # a shortstr

# registry token (one per provisioned server) -> queue names declared through it
_DECLARED: dict[str, set[str]] = {}
# registry token -> queue names whose declaration was seen through to disk (see declare)
_SYNCED: dict[str, set[str]] = {}
# a default exchange of every vhost, durable: binding to it is a metadata transaction on disk
SYNC_EXCHANGE = "amq.direct"


async def _open(endpoint: Endpoint) -> AbstractConnection:
    """Connect, or raise ConnectionLost naming only host and port: the client library's
    message and frames may hold the URL with its password."""
    try:
        return await aio_pika.connect(endpoint.url, timeout=CONNECT_TIMEOUT)
    except Exception as exc:  # every failure becomes one redacted error
        reason = type(exc).__name__
    host, port = endpoint.address
    raise ConnectionLost(f"could not connect to RabbitMQ at {host}:{port} ({reason})")


@contextlib.asynccontextmanager
async def _broken_as_lost(what: str) -> AsyncIterator[None]:
    try:
        yield
    except BROKEN as exc:
        raise ConnectionLost(f"rabbitmq {what}: {type(exc).__name__}: {exc}") from None


def check_queue_name(queue: str) -> None:
    """Refuse a queue name AMQP cannot carry, with ``ValueError`` naming why: the client library
    (pamqp) validates queue names against the 0-9-1 grammar before anything reaches the broker."""
    if not QUEUE_NAME.fullmatch(queue) or len(queue) > MAX_QUEUE_NAME:
        raise ValueError(
            f"rabbitmq: queue name {queue!r} is not an AMQP queue name "
            f"(at most {MAX_QUEUE_NAME} of the characters a-z A-Z 0-9 {NAME_PUNCTUATION!r})"
        )


def _check(message: Message) -> None:
    if len(message.payload) > MAX_PAYLOAD:
        raise PayloadTooLarge(len(message.payload), MAX_PAYLOAD, "message payload")
    if ATTEMPT_HEADER in message.headers:
        raise ValueError(f"header {ATTEMPT_HEADER!r} is reserved by the rabbitmq backend")


def _to_amqp(message: Message, *, persistent: bool, attempt: int | None = None) -> aio_pika.Message:
    headers: dict[str, object] = dict(message.headers)
    if attempt is not None:
        headers[ATTEMPT_HEADER] = attempt
    return aio_pika.Message(
        bytes(message.payload),
        headers=headers,  # type: ignore[arg-type]
        correlation_id=message.key,  # None stays absent
        message_id=uuid.uuid4().hex,
        delivery_mode=DeliveryMode.PERSISTENT if persistent else DeliveryMode.NOT_PERSISTENT,
    )


def _from_amqp(incoming: AbstractIncomingMessage) -> tuple[Message, int]:
    """The interface message and the attempt number stored with it (1 when none is)."""
    headers = dict(incoming.headers or {})
    stored = headers.pop(ATTEMPT_HEADER, 1)
    text = {name: value.decode() if isinstance(value, bytes) else str(value) for name, value in headers.items()}
    attempt = stored if isinstance(stored, int) else 1
    return Message(incoming.body, text, incoming.correlation_id), attempt


@dataclass
class _Pending:
    queue: str
    incoming: AbstractIncomingMessage
    message: Message
    attempt: int
    generation: int  # of the consumer channel that received it
    timer: asyncio.TimerHandle | None = None


class RabbitMQDriver(Driver):
    def __init__(
        self, name: str, capabilities: frozenset[Capability], endpoint: Endpoint, connection: AbstractConnection
    ) -> None:
        super().__init__(name, capabilities)
        self.endpoint = endpoint
        self.connection = connection
        self.token = uuid.uuid4().hex[:12]  # names this driver in its delivery ids
        registry = str(endpoint.options.get("registry", ""))
        self.names = _DECLARED.setdefault(registry, set())
        self.synced = _SYNCED.setdefault(registry, set())
        self._channels: dict[str, AbstractChannel] = {}
        self._open_lock = asyncio.Lock()
        self.generation = 0  # of the consumer channel: bumped whenever it is (re)opened
        self.pending: dict[str, _Pending] = {}
        # background work: expired deliveries being returned, gets whose caller stopped waiting
        self.tasks: set[asyncio.Future[Any]] = set()
        self.closed = False
        self._queue = RabbitQueue(self)
        self._pubsub = RabbitPubSub(self)

    @classmethod
    async def connect(cls, name: str, capabilities: frozenset[Capability], endpoint: Endpoint) -> Self:
        return cls(name, capabilities, endpoint, await _open(endpoint))

    # --- channels ------------------------------------------------------------------------------

    async def channel(self, kind: str) -> AbstractChannel:
        """The open channel of ``kind``, reconnecting first when the connection broke:
        ``confirm`` (publisher confirms, returns raise), ``tx`` (transactional consumer),
        ``admin`` (declares, deletes, existence checks) and ``subscribe``."""
        channel = self._channels.get(kind)
        if channel is not None and not channel.is_closed:
            return channel
        async with self._open_lock:
            channel = self._channels.get(kind)
            if channel is not None and not channel.is_closed:
                return channel
            if self.closed:
                raise ConnectionLost("rabbitmq: the driver is closed")
            if self.connection.is_closed:
                self.connection = await _open(self.endpoint)
            channel = await self.connection.channel(
                publisher_confirms=kind == "confirm", on_return_raises=kind == "confirm"
            )
            if kind == "tx":
                await (await channel.get_underlay_channel()).tx_select()
                self.generation += 1
            self._channels[kind] = channel
            return channel

    def consumer_channel_open(self, generation: int) -> bool:
        """Whether the consumer channel of ``generation`` is still the open one (the broker
        takes back every unacked delivery of a channel that closed)."""
        channel = self._channels.get("tx")
        return generation == self.generation and channel is not None and not channel.is_closed

    async def declare(self, queue: str, *, gone: bool = False) -> None:
        """Declare ``queue`` (durable); ``gone``: it was found missing, so this makes it anew."""
        check_queue_name(queue)  # before it is registered: a purge must never meet it
        if gone:
            self.synced.discard(queue)
        self.names.add(queue)
        channel = await self.channel("admin")
        declared = await channel.declare_queue(queue, durable=True)
        if queue not in self.synced:
            await self._sync_metadata(declared)
            self.synced.add(queue)

    async def _sync_metadata(self, declared: AbstractQueue) -> None:
        """See a new queue's declaration through to disk before anything is sent to it.

        RabbitMQ 3.10 answers ``queue.declare-ok`` before the queue's record is surely on disk:
        after a metadata transaction it syncs its metadata log only when a write counter moved,
        and under load it can miss the declaration's write. A SIGKILL then loses the queue and
        every confirmed message in it (6 queues of 60, docs/findings.md). A binding added and
        removed is two more metadata transactions; one that sees the counter move syncs the
        log, which holds the declaration before them (0 queues of 220 lost)."""
        key = f"prism-sync-{uuid.uuid4().hex}"
        await declared.bind(SYNC_EXCHANGE, routing_key=key)
        await declared.unbind(SYNC_EXCHANGE, routing_key=key)

    async def queue_exists(self, queue: str) -> bool:
        channel = await self.channel("admin")
        try:
            await channel.declare_queue(queue, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return False  # the broker closed the admin channel; the next use reopens it
        return True

    # --- lifecycle -----------------------------------------------------------------------------

    async def close(self) -> None:
        self.closed = True
        for pending in self.pending.values():
            if pending.timer is not None:
                pending.timer.cancel()
        self.pending.clear()
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.connection.close(), CLOSE_TIMEOUT)

    async def purge(self, prefix: str) -> None:
        doomed = sorted(name for name in self.names if name.startswith(prefix))
        for key, pending in list(self.pending.items()):
            if pending.queue in doomed:
                if pending.timer is not None:
                    pending.timer.cancel()
                del self.pending[key]
        async with _broken_as_lost("purge"):
            for name in doomed:
                channel = await self.channel("admin")
                with contextlib.suppress(aiormq.exceptions.ChannelNotFoundEntity):
                    await channel.queue_delete(name)  # with its messages, pending ones too
                self.names.discard(name)
                self.synced.discard(name)

    async def leftovers(self, prefix: str) -> list[str]:
        found = []
        async with _broken_as_lost("leftovers"):
            for name in sorted(n for n in self.names if n.startswith(prefix)):
                if await self.queue_exists(name):
                    found.append(f"queue:{name}")
                else:
                    self.names.discard(name)
                    self.synced.discard(name)
        return found  # subscriptions are exclusive queues that die with their connection

    # --- facets --------------------------------------------------------------------------------

    def queue(self) -> RabbitQueue:
        return self._queue

    def pubsub(self) -> RabbitPubSub:
        return self._pubsub


class RabbitQueue:
    def __init__(self, driver: RabbitMQDriver) -> None:
        self.driver = driver

    async def send(self, queue: str, message: Message) -> str:
        _check(message)
        amqp = _to_amqp(message, persistent=True)
        async with _broken_as_lost("send"):
            await self.driver.declare(queue)
            channel = await self.driver.channel("confirm")
            try:
                await channel.default_exchange.publish(amqp, routing_key=queue, mandatory=True)
            except aio_pika.exceptions.PublishError:
                # returned unroutable: another driver purged the queue since we declared it
                await self.driver.declare(queue, gone=True)
                await channel.default_exchange.publish(amqp, routing_key=queue, mandatory=True)
        assert amqp.message_id is not None
        return amqp.message_id

    async def receive(self, queue: str, *, wait: float = 0.0, visibility_timeout: float = 30.0) -> QueueDelivery | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        async with _broken_as_lost("receive"):
            await self.driver.declare(queue)
            while True:
                # Shielded: a caller that stops waiting (a timeout, a cancelled task) after the
                # broker handed a message over must not leave it unacked on the channel with
                # no visibility timer, invisible until the connection closes. The get runs on,
                # registers the delivery, and its timer returns the message.
                get = asyncio.ensure_future(self._get(queue, visibility_timeout))
                self.driver.tasks.add(get)
                get.add_done_callback(self.driver.tasks.discard)
                delivery = await asyncio.shield(get)
                if delivery is not None:
                    return delivery
                left = deadline - loop.time()
                if left <= 0:
                    return None
                await asyncio.sleep(min(POLL_INTERVAL, left))

    async def _get(self, queue: str, visibility_timeout: float) -> QueueDelivery | None:
        channel = await self.driver.channel("tx")
        generation = self.driver.generation
        amqp_queue: AbstractQueue = await channel.get_queue(queue, ensure=False)
        try:
            incoming = await amqp_queue.get(no_ack=False, fail=False)
        except aiormq.exceptions.ChannelNotFoundEntity:
            await self.driver.declare(queue, gone=True)  # purged by another driver meanwhile
            return None
        if incoming is None:
            return None
        message, stored = _from_amqp(incoming)
        # A copy made by nack or expiry carries its attempt; a message the broker took back
        # from a closed channel is flagged redelivered.
        attempt = stored + (1 if incoming.redelivered else 0)
        delivery_id = f"{self.driver.token}:{generation}:{incoming.delivery_tag}"
        pending = _Pending(queue, incoming, message, attempt, generation)
        loop = asyncio.get_running_loop()
        pending.timer = loop.call_later(visibility_timeout, self._expire, delivery_id)
        self.driver.pending[delivery_id] = pending
        return QueueDelivery(delivery_id, message, attempt)

    def _take(self, queue: str, delivery: QueueDelivery) -> _Pending:
        pending = self.driver.pending.get(delivery.delivery_id)
        if pending is None or pending.queue != queue:
            raise DeliveryNotFound(
                f"delivery {delivery.delivery_id!r} is not pending on queue {queue!r} here "
                "(settled, expired, purged, or received by another connection)"
            )
        del self.driver.pending[delivery.delivery_id]
        if pending.timer is not None:
            pending.timer.cancel()
        if not self.driver.consumer_channel_open(pending.generation):
            raise DeliveryNotFound(
                f"delivery {delivery.delivery_id!r}: the channel that received it closed, "
                "and the broker returned the message to the queue"
            )
        return pending

    async def _settle(self, pending: _Pending, *, requeue: bool) -> None:
        """Ack the original (with a copy carrying the next attempt when ``requeue``) in one
        transaction, and return once the queue process applied it."""
        channel = await self.driver.channel("tx")
        if self.driver.generation != pending.generation:
            raise DeliveryNotFound("the channel that received the delivery closed; the broker took it back")
        if requeue:
            copy = _to_amqp(pending.message, persistent=True, attempt=pending.attempt + 1)
            await channel.default_exchange.publish(copy, routing_key=pending.queue, mandatory=False)
        await pending.incoming.ack()
        await (await channel.get_underlay_channel()).tx_commit()
        # queue.declare (passive) is answered by the queue process itself, after the ack the
        # channel forwarded to it: when this returns, the ack has been applied.
        with contextlib.suppress(aiormq.exceptions.ChannelNotFoundEntity):  # purged meanwhile
            await channel.declare_queue(pending.queue, passive=True)

    async def ack(self, queue: str, delivery: QueueDelivery) -> None:
        pending = self._take(queue, delivery)
        async with _broken_as_lost("ack"):
            await self._settle(pending, requeue=False)

    async def nack(self, queue: str, delivery: QueueDelivery) -> None:
        pending = self._take(queue, delivery)
        async with _broken_as_lost("nack"):
            await self._settle(pending, requeue=True)

    def _expire(self, delivery_id: str) -> None:
        pending = self.driver.pending.pop(delivery_id, None)
        if pending is None or self.driver.closed:
            return
        task = asyncio.ensure_future(self._return_expired(pending))
        self.driver.tasks.add(task)
        task.add_done_callback(self.driver.tasks.discard)

    async def _return_expired(self, pending: _Pending) -> None:
        # A failure leaves the message unacked on a broken channel: the broker takes it back.
        with contextlib.suppress(Exception):
            await self._settle(pending, requeue=True)


class RabbitSubscription:
    def __init__(self, amqp_queue: AbstractQueue, inbox: asyncio.Queue[Message]) -> None:
        self.amqp_queue = amqp_queue
        self.inbox = inbox
        self.consumer_tag: ConsumerTag | None = None
        self.closed = False

    async def receive(self, wait: float) -> Message | None:
        if self.closed:
            return None
        if wait <= 0:
            try:
                return self.inbox.get_nowait()
            except asyncio.QueueEmpty:
                return None
        try:
            return await asyncio.wait_for(self.inbox.get(), wait)
        except TimeoutError:
            return None

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):
            if self.consumer_tag is not None:
                await self.amqp_queue.cancel(self.consumer_tag)
            await self.amqp_queue.delete(if_unused=False, if_empty=False)


class RabbitPubSub:
    def __init__(self, driver: RabbitMQDriver) -> None:
        self.driver = driver

    async def _exchange(self, kind: str) -> AbstractExchange:
        channel = await self.driver.channel(kind)
        return await channel.declare_exchange(PUBSUB_EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=False)

    async def publish(self, topic: str, message: Message) -> None:
        _check(message)
        async with _broken_as_lost("publish"):
            exchange = await self._exchange("confirm")
            await exchange.publish(_to_amqp(message, persistent=False), routing_key=topic, mandatory=False)

    async def subscribe(self, topic: str) -> RabbitSubscription:
        async with _broken_as_lost("subscribe"):
            exchange = await self._exchange("subscribe")
            channel = await self.driver.channel("subscribe")
            amqp_queue = await channel.declare_queue(exclusive=True, auto_delete=True)
            await amqp_queue.bind(exchange, routing_key=topic)
            inbox: asyncio.Queue[Message] = asyncio.Queue()
            subscription = RabbitSubscription(amqp_queue, inbox)

            async def deliver(incoming: AbstractIncomingMessage) -> None:
                if not subscription.closed:
                    inbox.put_nowait(_from_amqp(incoming)[0])

            subscription.consumer_tag = await amqp_queue.consume(deliver, no_ack=True)
        return subscription
