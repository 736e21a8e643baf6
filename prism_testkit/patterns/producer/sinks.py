"""Where a producer publishes: a queue, log or pub/sub one message at a time, or a batch sink such as
an outbox in one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from prism_testkit.interfaces import Log, Message, PubSub, Queue

from .errors import ProducerConfigurationError

# --- sinks ---------------------------------------------------------------------------------


@runtime_checkable
class BatchSink(Protocol):
    """A sink that takes a whole batch in one call, all or nothing (an outbox transaction)."""

    async def publish_batch(self, destination: str, messages: Sequence[Message]) -> None: ...


class OutboxSink:
    """A producer whose sink is an outbox: each batch becomes one outbox transaction (its events
    commit together or not at all), and the outbox's relay publishes them on. ``event_type``
    names the events; the destination is their aggregate id."""

    def __init__(self, outbox: object, event_type: str = "Produced") -> None:
        from ..outbox import Outbox

        if not isinstance(outbox, Outbox):
            raise ProducerConfigurationError(f"OutboxSink needs an Outbox, not {type(outbox).__name__}")
        self.outbox = outbox
        self.event_type = event_type

    async def publish_batch(self, destination: str, messages: Sequence[Message]) -> None:
        async with self.outbox.transaction() as tx:
            for message in messages:
                await tx.publish(destination, self.event_type, bytes(message.payload), dict(message.headers))


class _Send(Protocol):
    async def __call__(self, destination: str, messages: Sequence[Message]) -> None: ...


def _sender(sink: object) -> tuple[str, _Send]:
    """How to publish through ``sink``: its kind and a function sending a batch (one message for
    every kind but a batch sink)."""
    if isinstance(sink, BatchSink):
        return "batch", sink.publish_batch
    if isinstance(sink, Queue):
        queue = sink

        async def send_queue(destination: str, messages: Sequence[Message]) -> None:
            for message in messages:
                await queue.send(destination, message)

        return "queue", send_queue
    if isinstance(sink, Log):
        log_ = sink

        async def append(destination: str, messages: Sequence[Message]) -> None:
            for message in messages:
                await log_.append(destination, message)

        return "log", append
    pubsub = sink
    assert isinstance(pubsub, PubSub)

    async def publish(destination: str, messages: Sequence[Message]) -> None:
        for message in messages:
            await pubsub.publish(destination, message)

    return "pubsub", publish
