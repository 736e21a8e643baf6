"""Reading a sink as a downstream consumer would, and knowing when it has seen everything.

A check that nothing stray was delivered used to drain until a wait of 0.1 s found nothing:
a hope, paid on every check (most of the outbox and CDC suites' time). Where the sink's
declared order allows, a fence makes it exact and free: a log's end offset, or a marker sent
after everything else to a queue or topic with total order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import prism_testkit.simulation.clock as clocks
from prism_testkit import Driver, Message, Ordering, patience
from prism_testkit.interfaces import Log, PubSub, Queue, QueueDelivery, Record, Subscription
from prism_testkit.patience import Unsettled

from ._helpers import drain_queue, drain_subscription

Kind = Literal["queue", "log", "pubsub"]


async def receive_available(
    queue: Queue, name: str, *, wait: float, visibility_timeout: float | None = None
) -> list[QueueDelivery]:
    """What queue ``name`` holds now, acked, waiting up to ``wait`` seconds for the first
    message only: a wait that finds nothing costs its whole length, so pay it only while
    nothing has come. Each is held for ``visibility_timeout`` (by default a lease)."""
    visibility_timeout = patience.handed("lease") if visibility_timeout is None else visibility_timeout
    first = await queue.receive(name, wait=wait, visibility_timeout=visibility_timeout)
    if first is None:
        return []
    await queue.ack(name, first)
    return [first, *await drain_queue(queue, name, wait=0.0, visibility_timeout=visibility_timeout)]


FENCE_HEADER = "prism-fence"


def unfenced(messages: list[Message]) -> list[Message]:
    """Without fences: one of an earlier read that was cut short (a fault, a retry) may come later."""
    return [m for m in messages if FENCE_HEADER not in m.headers]


async def drain_to_fence(queue: Queue, name: str, *, deadline: float) -> list[Message]:
    """Every message sent to queue ``name`` before this call, acked, without listening for
    strays: in a queue with total order a fence sent now comes after all of them, so its
    arrival proves nothing sent earlier is still on its way. (A drain that ends on a wait
    finding nothing only hopes so, and costs that wait every time.)"""
    fence = clocks.fresh_uuid().hex
    started = clocks.monotonic()
    await queue.send(name, Message(b"", {FENCE_HEADER: fence}))
    out: list[Message] = []
    while (left := deadline - clocks.monotonic()) > 0:  # hand-rolled: the caller's deadline; receives wait what is left
        delivery = await queue.receive(name, wait=left)
        if delivery is None:
            continue
        await queue.ack(name, delivery)
        if delivery.message.headers.get(FENCE_HEADER) == fence:
            return out
        out.extend(unfenced([delivery.message]))
    raise Unsettled(
        f"sink: a fence sent to queue {name} to arrive (the messages sent before it may be stuck too)",
        clocks.monotonic() - started,
        "stall",
        f"{len(out)} messages before it so far",
    )


async def drain_subscription_to_fence(pubsub: PubSub, topic: str, sub: Subscription, *, quiet: float) -> list[Message]:
    """What ``sub`` was delivered before this call, ended by a fence published now to
    ``topic`` (a topic with total order delivers it after them). Pub/sub may lose the fence
    (at most once): then it ends like a tail drain, when ``quiet`` seconds bring nothing."""
    fence = clocks.fresh_uuid().hex
    await pubsub.publish(topic, Message(b"", {FENCE_HEADER: fence}))
    out: list[Message] = []
    while (message := await sub.receive(quiet)) is not None:
        if message.headers.get(FENCE_HEADER) == fence:
            break
        out.extend(unfenced([message]))
    return out


async def read_to_end(log: Log, name: str, start: int, *, deadline: float) -> list[Record]:
    """Every record of ``name`` from ``start`` to the log's end as of this call: a record
    appended before it lies below that end, so no wait for strays is needed."""
    started = clocks.monotonic()
    end = await log.end_offset(name)
    out: list[Record] = []
    offset = start
    while offset < end:
        if clocks.monotonic() >= deadline:  # hand-rolled: the caller's deadline (until_now's), handed over
            raise Unsettled(
                f"sink: records {offset}..{end - 1} of log {name} to be readable (its end offset says they exist)",
                clocks.monotonic() - started,
                "stall",
            )
        batch = await log.read(name, offset, limit=1000, wait=0.1)
        out.extend(batch)
        offset = batch[-1].offset + 1 if batch else offset
    return out


class SinkReader:
    """One destination of a sink, read as a downstream consumer would: a queue (acking what it
    takes), a log (from where it got to) or a subscription. ``driver`` is called at each use:
    a restarted server's new driver replaces the old one."""

    def __init__(
        self, driver: Callable[[], Driver], kind: Kind, destination: str, ordering: Ordering, *, quiet: float = 0.1
    ) -> None:
        self._driver, self.kind, self.destination, self.ordering = driver, kind, destination, ordering
        # how long a wait must bring nothing where no fence can be used (on a quiet machine:
        # patience.quiet() lengthens it when used, or a slow delivery would be read as none)
        self.quiet = quiet
        self.offset = 0
        self.subscription: Subscription | None = None

    async def open(self) -> None:
        if self.kind == "pubsub":
            # At-most-once fan-out: only a subscriber present at publish time gets a message.
            self.subscription = await self._driver().pubsub().subscribe(self.destination)

    async def close(self) -> None:
        subscription, self.subscription = self.subscription, None
        if subscription is not None:
            await subscription.close()

    async def receive(self, wait: float) -> list[Message]:
        """What the destination holds now, waiting up to ``wait`` seconds for the first of it."""
        if self.kind == "queue":
            deliveries = await receive_available(self._driver().queue(), self.destination, wait=wait)
            return unfenced([d.message for d in deliveries])
        if self.kind == "log":
            return self._advance(await self._driver().log().read(self.destination, self.offset, limit=1000, wait=wait))
        assert self.subscription is not None, "open() subscribes first"
        first = await self.subscription.receive(wait)
        return [] if first is None else unfenced([first, *await drain_subscription(self.subscription, wait=0.0)])

    async def until_now(self, deadline: float) -> list[Message]:
        """Everything delivered before this call: exactly, where the sink's order allows it,
        or else by listening until :attr:`quiet` seconds bring nothing."""
        driver = self._driver()
        if self.kind == "log":
            return self._advance(await read_to_end(driver.log(), self.destination, self.offset, deadline=deadline))
        if self.ordering is Ordering.TOTAL:
            if self.kind == "queue":
                return await drain_to_fence(driver.queue(), self.destination, deadline=deadline)
            assert self.subscription is not None, "open() subscribes first"
            return await drain_subscription_to_fence(
                driver.pubsub(), self.destination, self.subscription, quiet=patience.quiet(self.quiet)
            )
        out: list[Message] = []
        while batch := await self.receive(patience.quiet(self.quiet)):
            out.extend(batch)
        return out

    def _advance(self, records: list[Record]) -> list[Message]:
        if records:
            self.offset = records[-1].offset + 1
        return [r.message for r in records]
