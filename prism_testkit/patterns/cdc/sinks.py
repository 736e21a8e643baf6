"""Where change events go: any queue, log or pub/sub of any backend. ``publish`` returns only
when the backend acknowledged the message, and raises when it may not have been stored."""

from __future__ import annotations

from typing import Protocol

from prism_testkit.interfaces import Log, Message, PubSub, Queue


class EventSink(Protocol):
    async def publish(self, topic: str, message: Message) -> None: ...


class QueueEventSink:
    def __init__(self, queue: Queue) -> None:
        self.queue = queue

    async def publish(self, topic: str, message: Message) -> None:
        await self.queue.send(topic, message)


class LogEventSink:
    def __init__(self, log: Log) -> None:
        self.log = log

    async def publish(self, topic: str, message: Message) -> None:
        await self.log.append(topic, message)


class PubSubEventSink:
    """At-most-once for subscribers not listening at publish time: prefer a queue or a log
    when every consumer must see every change."""

    def __init__(self, pubsub: PubSub) -> None:
        self.pubsub = pubsub

    async def publish(self, topic: str, message: Message) -> None:
        await self.pubsub.publish(topic, message)
