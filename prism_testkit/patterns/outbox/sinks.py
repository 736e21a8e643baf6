"""Where a relay (or the change-feed publisher) publishes: a queue, a log or a pub/sub topic,
named by a destination that may route by event type or aggregate."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from prism_testkit.interfaces import Log, Message, PubSub, Queue

from .codec import HEADER_AGGREGATE_ID, HEADER_EVENT_TYPE
from .errors import OutboxConfigurationError


@runtime_checkable
class Sink(Protocol):
    """Where the relay publishes. Must raise when the message may not have been published."""

    async def publish(self, message: Message) -> None: ...


def _route(destination: str, message: Message) -> str:
    """``"orders.{event_type}"`` → ``"orders.OrderCreated"`` (RFC-009's ``topic_pattern``)."""
    if "{" not in destination:
        return destination
    return destination.format_map(
        {
            "event_type": message.headers.get(HEADER_EVENT_TYPE, ""),
            "aggregate_id": message.headers.get(HEADER_AGGREGATE_ID, ""),
        }
    )


def _checked_destination(destination: str) -> str:
    try:
        _route(destination, Message(b"", {HEADER_EVENT_TYPE: "t", HEADER_AGGREGATE_ID: "a"}))
    except (KeyError, IndexError, ValueError) as exc:
        raise OutboxConfigurationError(
            f"destination {destination!r} may only use {{event_type}} and {{aggregate_id}} ({exc!r})"
        ) from None
    if not destination:
        raise OutboxConfigurationError("destination must be non-empty")
    return destination


class QueueSink:
    def __init__(self, queue: Queue, destination: str) -> None:
        self.queue = queue
        self.destination = _checked_destination(destination)

    async def publish(self, message: Message) -> None:
        await self.queue.send(_route(self.destination, message), message)


class LogSink:
    def __init__(self, log: Log, destination: str) -> None:
        self.log = log
        self.destination = _checked_destination(destination)

    async def publish(self, message: Message) -> None:
        await self.log.append(_route(self.destination, message), message)


class PubSubSink:
    """Pub/sub is at-most-once for subscribers that are not listening: prefer a queue or log
    sink when every consumer must see every event."""

    def __init__(self, pubsub: PubSub, destination: str) -> None:
        self.pubsub = pubsub
        self.destination = _checked_destination(destination)

    async def publish(self, message: Message) -> None:
        await self.pubsub.publish(_route(self.destination, message), message)
