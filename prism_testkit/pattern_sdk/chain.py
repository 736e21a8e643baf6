"""Pattern composition (RFC-014 "Stitching Patterns Together"): an ordered chain of patterns
between a client API and a messaging backend.

A pattern transforms messages: ``outgoing`` on the way to the backend, ``incoming`` on the way
back. :class:`PatternChain` applies ``outgoing`` in list order and ``incoming`` in reverse, so
the first pattern of a namespace file is the outermost (closest to the application) and sees
on consume exactly what it produced on publish, whatever the inner patterns did in between.

Two optional hooks let stateful patterns clean up (the claim check's stage,
:class:`~prism_testkit.patterns.claim_check.ClaimCheckStage`, has both):

* ``release(message)``: the consumer acknowledged; ``message`` is what this pattern produced
  on publish (its ``incoming`` input). Called after the ack, never before, so a redelivered
  message still finds whatever the pattern stored for it.
* ``abandon(message, error)``: the send of ``message`` (this pattern's output) failed, or an
  inner pattern failed, so nobody will ever consume it.

Usage::

    chain = PatternChain([ClaimCheckStage(claim_check), Stamp()])
    queue = ChainedQueue(raw_queue, chain)
    await queue.send("videos", Message(big_payload))
    delivery = await queue.receive("videos", wait=1.0)
    await queue.ack("videos", delivery)        # acks, then releases every stage
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar, runtime_checkable

from prism_testkit.errors import ConfigurationError, ConnectionLost, PrismError
from prism_testkit.interfaces import Log, Message, PubSub, Queue, QueueDelivery, Record, Subscription

__all__ = [
    "Abandoning",
    "ChainedLog",
    "ChainedPubSub",
    "ChainedQueue",
    "ChainedSubscription",
    "Pattern",
    "PatternChain",
    "Receipt",
    "Releasing",
]

log = logging.getLogger(__name__)
T = TypeVar("T")


@runtime_checkable
class Pattern(Protocol):
    """RFC-014's Pattern trait: ``process_publish`` / ``process_consume`` as message transforms."""

    async def outgoing(self, message: Message) -> Message:
        """Applied on publish, before the (inner patterns and the) backend."""
        ...

    async def incoming(self, message: Message) -> Message:
        """Applied on consume; undoes what ``outgoing`` did."""
        ...


@runtime_checkable
class Releasing(Protocol):
    async def release(self, message: Message) -> None: ...


@runtime_checkable
class Abandoning(Protocol):
    async def abandon(self, message: Message, error: BaseException) -> None: ...


@dataclass(frozen=True)
class Receipt:
    """What one consumed message went through: each stage with the message it received on
    consume (= what it produced on publish), innermost first."""

    stages: tuple[tuple[Pattern, Message], ...] = ()


class PatternChain:
    """Patterns applied in order on publish and in reverse order on consume.

    A chain is itself a :class:`Pattern`, so chains nest.
    """

    def __init__(self, patterns: Sequence[Pattern]) -> None:
        for index, pattern in enumerate(patterns):
            if not isinstance(pattern, Pattern):
                raise ConfigurationError(
                    f"pattern #{index} ({type(pattern).__name__}) has no async outgoing/incoming methods"
                )
        self.patterns: tuple[Pattern, ...] = tuple(patterns)

    def __len__(self) -> int:
        return len(self.patterns)

    async def outgoing(self, message: Message) -> Message:
        for pattern in self.patterns:
            message = await pattern.outgoing(message)
        return message

    async def incoming(self, message: Message) -> Message:
        return (await self.consume(message))[0]

    async def publish(self, message: Message, send: Callable[[Message], Awaitable[T]]) -> T:
        """Run every ``outgoing``, then ``send`` the result. On failure every stage that already
        produced output is told to ``abandon`` it (innermost first), then the error propagates.

        An unknown outcome (:class:`ConnectionLost`, or an error that is not a prism error such
        as a socket error) may have delivered the message, so nothing is abandoned for it.
        """
        produced: list[tuple[Pattern, Message]] = []
        try:
            for pattern in self.patterns:
                message = await pattern.outgoing(message)
                produced.append((pattern, message))
            return await send(message)
        except PrismError as exc:
            if not isinstance(exc, ConnectionLost):
                await _abandon(produced, exc)
            raise

    async def consume(self, message: Message) -> tuple[Message, Receipt]:
        """Run every ``incoming`` in reverse order; the receipt is what :meth:`release` needs."""
        stages: list[tuple[Pattern, Message]] = []
        for pattern in reversed(self.patterns):
            stages.append((pattern, message))
            message = await pattern.incoming(message)
        return message, Receipt(tuple(stages))

    async def release(self, receipt: Receipt) -> None:
        """After the ack: let every stage release what it stored. A failure is logged, not raised,
        because the ack already happened and a caller retrying it would ack twice."""
        for pattern, message in receipt.stages:
            if isinstance(pattern, Releasing):
                try:
                    await pattern.release(message)
                except Exception:
                    log.warning("pattern %s could not release a message", type(pattern).__name__, exc_info=True)


async def _abandon(produced: list[tuple[Pattern, Message]], error: BaseException) -> None:
    for pattern, message in reversed(produced):
        if isinstance(pattern, Abandoning):
            try:
                await pattern.abandon(message, error)
            except Exception:
                log.warning("pattern %s could not abandon a message", type(pattern).__name__, exc_info=True)


def _with_raw(exc: Exception, raw: object) -> None:
    # Like the claim check adapters: the caller can still ack or nack an undecodable delivery.
    if isinstance(exc, PrismError):
        exc.raw = raw  # type: ignore[attr-defined]


class ChainedQueue:
    """A :class:`Queue` with a chain applied on send and reversed on receive; ``ack`` acks the
    backend's own delivery first and releases the chain's stages after."""

    def __init__(self, queue: Queue, chain: PatternChain) -> None:
        self.inner = queue
        self.chain = chain
        # (queue, delivery id) -> (undecoded delivery, receipt); lives until acked or nacked. A
        # delivery id is unique within its queue only (Redis numbers each stream on its own).
        self._pending: dict[tuple[str, str], tuple[QueueDelivery, Receipt]] = {}

    async def send(self, queue: str, message: Message) -> str:
        async def send(out: Message) -> str:
            return await self.inner.send(queue, out)

        return await self.chain.publish(message, send)

    async def receive(self, queue: str, *, wait: float = 0.0, visibility_timeout: float = 30.0) -> QueueDelivery | None:
        raw = await self.inner.receive(queue, wait=wait, visibility_timeout=visibility_timeout)
        if raw is None:
            return None
        pending = (queue, raw.delivery_id)
        try:
            message, receipt = await self.chain.consume(raw.message)
        except Exception as exc:
            self._pending[pending] = (raw, Receipt())
            _with_raw(exc, raw)
            raise
        self._pending[pending] = (raw, receipt)
        return QueueDelivery(raw.delivery_id, message, raw.attempt)

    async def ack(self, queue: str, delivery: QueueDelivery) -> None:
        pending = (queue, delivery.delivery_id)
        raw, receipt = self._pending.get(pending, (delivery, Receipt()))
        await self.inner.ack(queue, raw)
        self._pending.pop(pending, None)
        await self.chain.release(receipt)

    async def nack(self, queue: str, delivery: QueueDelivery) -> None:
        pending = (queue, delivery.delivery_id)
        raw, _ = self._pending.get(pending, (delivery, Receipt()))
        await self.inner.nack(queue, raw)
        self._pending.pop(pending, None)


class ChainedLog:
    """A :class:`Log` with a chain applied on append and reversed on read; :meth:`commit`
    releases the stages of the records it covers, after the offset is committed."""

    def __init__(self, log: Log, chain: PatternChain) -> None:
        self.inner = log
        self.chain = chain
        self._receipts: dict[tuple[str, int], Receipt] = {}

    async def append(self, log: str, message: Message) -> int:
        async def append(out: Message) -> int:
            return await self.inner.append(log, out)

        return await self.chain.publish(message, append)

    async def read(self, log: str, offset: int, *, limit: int = 100, wait: float = 0.0) -> list[Record]:
        restored: list[Record] = []
        for record in await self.inner.read(log, offset, limit=limit, wait=wait):
            try:
                message, receipt = await self.chain.consume(record.message)
            except Exception as exc:
                _with_raw(exc, record)
                raise
            self._receipts[(log, record.offset)] = receipt
            restored.append(Record(record.offset, message))
        return restored

    async def end_offset(self, log: str) -> int:
        return await self.inner.end_offset(log)

    async def committed(self, log: str, group: str) -> int | None:
        return await self.inner.committed(log, group)

    async def commit(self, log: str, group: str, offset: int) -> None:
        await self.inner.commit(log, group, offset)
        done = [key for key in self._receipts if key[0] == log and key[1] < offset]
        for key in sorted(done):
            await self.chain.release(self._receipts.pop(key))


class ChainedSubscription:
    def __init__(self, inner: Subscription, chain: PatternChain) -> None:
        self.inner = inner
        self.chain = chain

    async def receive(self, wait: float) -> Message | None:
        message = await self.inner.receive(wait)
        if message is None:
            return None
        try:
            return (await self.chain.consume(message))[0]
        except Exception as exc:
            _with_raw(exc, message)
            raise

    async def close(self) -> None:
        await self.inner.close()


class ChainedPubSub:
    """A :class:`PubSub` with a chain. Nothing is released on consume: every subscriber gets the
    same message, so one subscriber must not delete what the others still need (a claim check
    under pub/sub keeps its objects and relies on their TTL)."""

    def __init__(self, pubsub: PubSub, chain: PatternChain) -> None:
        self.inner = pubsub
        self.chain = chain

    async def publish(self, topic: str, message: Message) -> None:
        async def publish(out: Message) -> None:
            await self.inner.publish(topic, out)

        await self.chain.publish(message, publish)

    async def subscribe(self, topic: str) -> ChainedSubscription:
        return ChainedSubscription(await self.inner.subscribe(topic), self.chain)
