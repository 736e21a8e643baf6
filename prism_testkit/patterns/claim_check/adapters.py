"""The messaging adapters: a queue, a log and a pub/sub with claim check applied on send and
reversed on receive, releasing claims only after the ack or commit."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from prism_testkit.errors import ConfigurationError, ConnectionLost, PrismError
from prism_testkit.interfaces import Log, Message, PubSub, Queue, QueueDelivery, Record, Subscription

from .claim import ClaimCheck
from .reference import ClaimCheckError, ClaimReference, InvalidClaimReference

log = logging.getLogger(__name__)


_T = TypeVar("_T")


async def _send_claimed(claim_check: ClaimCheck, message: Message, send: Callable[[Message], Awaitable[_T]]) -> _T:
    """Claim, then send; if the send certainly failed, delete the now-unreferenced object.

    An unknown outcome (:class:`ConnectionLost`, or a non-prism error such as a socket error)
    may have delivered the message, so its object is kept and left to the TTL.
    """
    claimed = await claim_check.outgoing(message)
    try:
        return await send(claimed)
    except PrismError as exc:
        ref = claim_check.reference(claimed) if claimed is not message else None
        if ref is not None and not isinstance(exc, ConnectionLost):
            await claim_check._discard(ref.bucket, ref.key)
        raise


def _attach(exc: ClaimCheckError, raw: object) -> ClaimCheckError:
    exc.raw = raw
    return exc


class ClaimCheckQueue:
    """A :class:`Queue` with claim check applied on send and reversed on receive.

    ``ack`` acknowledges first and releases the object after, never the other way round, so a
    nacked (or timed-out) message still finds its object on redelivery. A receive whose claim
    is broken raises the claim error with ``.raw`` set to the undecoded :class:`QueueDelivery`, which
    the caller can ``ack`` (drop) or ``nack``.
    """

    def __init__(self, queue: Queue, claim_check: ClaimCheck) -> None:
        self.inner = queue
        self.claim_check = claim_check
        # (queue, delivery id) -> (undecoded delivery, its claim). The backend gets back exactly
        # the delivery it handed out, and ack knows what to release though the restored message
        # no longer carries the header. Entries live until the delivery is acked or nacked. A
        # delivery id is unique within its queue only (Redis numbers each stream's entries on
        # its own), so one adapter over two queues tells their deliveries apart by the queue.
        self._pending: dict[tuple[str, str], tuple[QueueDelivery, ClaimReference | None]] = {}

    async def send(self, queue: str, message: Message) -> str:
        async def send(claimed: Message) -> str:
            return await self.inner.send(queue, claimed)

        return await _send_claimed(self.claim_check, message, send)

    async def receive(self, queue: str, *, wait: float = 0.0, visibility_timeout: float = 30.0) -> QueueDelivery | None:
        raw = await self.inner.receive(queue, wait=wait, visibility_timeout=visibility_timeout)
        if raw is None:
            return None
        pending = (queue, raw.delivery_id)
        try:
            ref = self.claim_check.reference(raw.message)
            self._pending[pending] = (raw, ref)
            message = await self.claim_check.incoming(raw.message)
        except ClaimCheckError as exc:
            self._pending.setdefault(pending, (raw, None))
            raise _attach(exc, raw) from None
        return QueueDelivery(raw.delivery_id, message, raw.attempt)

    async def ack(self, queue: str, delivery: QueueDelivery) -> None:
        pending = (queue, delivery.delivery_id)
        raw, ref = self._pending.get(pending, (delivery, None))
        await self.inner.ack(queue, raw)
        self._pending.pop(pending, None)
        await self.claim_check._release_quietly(ref)

    async def nack(self, queue: str, delivery: QueueDelivery) -> None:
        pending = (queue, delivery.delivery_id)
        raw, _ = self._pending.get(pending, (delivery, None))
        await self.inner.nack(queue, raw)
        self._pending.pop(pending, None)


class ClaimCheckLog:
    """A :class:`Log` with claim check applied on append and reversed on read.

    Objects are released by :meth:`commit`, after the group offset is committed. With
    ``on_consume == "delete"`` only one consumer group may read the log and a replay of
    committed records fails with :class:`ClaimNotFound`; use ``"keep"`` plus a TTL that
    matches the log's retention for replay or several groups.
    """

    def __init__(self, log: Log, claim_check: ClaimCheck) -> None:
        self.inner = log
        self.claim_check = claim_check
        self._claims: dict[tuple[str, int], ClaimReference] = {}  # (log, offset) -> claim read

    async def append(self, log: str, message: Message) -> int:
        async def append(claimed: Message) -> int:
            return await self.inner.append(log, claimed)

        return await _send_claimed(self.claim_check, message, append)

    async def read(self, log: str, offset: int, *, limit: int = 100, wait: float = 0.0) -> list[Record]:
        records = await self.inner.read(log, offset, limit=limit, wait=wait)
        restored: list[Record] = []
        for record in records:
            try:
                ref = self.claim_check.reference(record.message)
                message = await self.claim_check.incoming(record.message)
            except ClaimCheckError as exc:
                raise _attach(exc, record) from None
            if ref is not None and self.claim_check.config.on_consume == "delete":
                self._claims[(log, record.offset)] = ref
            restored.append(Record(record.offset, message))
        return restored

    async def end_offset(self, log: str) -> int:
        return await self.inner.end_offset(log)

    async def committed(self, log: str, group: str) -> int | None:
        return await self.inner.committed(log, group)

    async def commit(self, log: str, group: str, offset: int, records: list[Record] | None = None) -> None:
        """Commit ``group``'s offset, then release the claims of ``records`` below ``offset``
        (records as returned by :meth:`read`, or undecoded ones carrying the header)."""
        await self.inner.commit(log, group, offset)
        for record in records or ():
            if record.offset >= offset:
                continue
            ref = self._claims.pop((log, record.offset), None)
            if ref is None:
                try:
                    ref = self.claim_check.reference(record.message)
                except InvalidClaimReference:
                    ref = None
            await self.claim_check._release_quietly(ref)


class ClaimCheckSubscription:
    """A :class:`Subscription` whose messages come back restored."""

    def __init__(self, inner: Subscription, claim_check: ClaimCheck) -> None:
        self.inner = inner
        self.claim_check = claim_check

    async def receive(self, wait: float) -> Message | None:
        message = await self.inner.receive(wait)
        if message is None:
            return None
        try:
            return await self.claim_check.incoming(message)
        except ClaimCheckError as exc:
            raise _attach(exc, message) from None

    async def close(self) -> None:
        await self.inner.close()


class ClaimCheckPubSub:
    """A :class:`PubSub` with claim check applied on publish and reversed on receive.

    Every subscriber gets the same reference, so a subscriber deleting the object after reading
    it would pull it from under the others: only ``on_consume == "keep"`` is accepted, and the
    objects' ``ttl`` (or a bucket lifecycle policy) removes them.
    """

    def __init__(self, pubsub: PubSub, claim_check: ClaimCheck) -> None:
        if claim_check.config.on_consume != "keep":
            raise ConfigurationError(
                "claim check over pub/sub needs on_consume='keep' (with a ttl): fan-out delivers "
                "one reference to every subscriber, and the first to delete the object would "
                "break the others"
            )
        self.inner = pubsub
        self.claim_check = claim_check

    async def publish(self, topic: str, message: Message) -> None:
        async def publish(claimed: Message) -> None:
            await self.inner.publish(topic, claimed)

        await _send_claimed(self.claim_check, message, publish)

    async def subscribe(self, topic: str) -> ClaimCheckSubscription:
        return ClaimCheckSubscription(await self.inner.subscribe(topic), self.claim_check)
