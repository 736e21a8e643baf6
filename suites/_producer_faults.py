"""Faults and seams the producer and consumer suites inject (no backend knowledge here).

* :class:`FaultySink` wraps a queue, log or topic and fails chosen send attempts, either before
  the send (a definite failure: nothing arrived) or after it (the broker stored the message but
  the answer was lost: an unknown outcome), or holds a send until released; every attempt is
  recorded, so each retry is visible.
* :class:`FlakyState` wraps the key-value state: it can forget keys (state lost or expired behind
  the pattern's back), refuse reads, or die (a killed process: nothing it does after the kill
  reaches the store) at a chosen write.
* :class:`FakeClock` is a wall clock the test moves; :class:`Sleeps` records the backoff waits
  a pattern asks for and yields instead of sleeping.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Literal

from prism_testkit import Driver, KeyValue, Message
from prism_testkit.errors import ConnectionLost
from prism_testkit.interfaces import MESSAGE_ID_HEADER, Log, PubSub, Queue, QueueDelivery, Record, Subscription

from ._relay_faults import Killed

Kind = Literal["queue", "log", "pubsub"]
When = Literal["before", "after", "hang"]


@dataclass
class Attempt:
    message_id: str
    payload: bytes
    attempt: str
    outcome: str  # "ok", "refused" (failed before the send), "lost-answer" (sent, answer lost), "held"


@dataclass
class FaultySink:
    """A sink of one kind whose sends fail as planned. ``plan`` maps a payload to the faults of
    its successive attempts (``"before"``, ``"after"``, ``"hang"``); attempts past the plan go
    through."""

    kind: Kind
    driver: Driver
    plan: dict[bytes, list[When]] = field(default_factory=dict)
    attempts: list[Attempt] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    held: asyncio.Event = field(default_factory=asyncio.Event)  # set once a send is being held

    def __post_init__(self) -> None:
        self._seen: dict[bytes, int] = {}

    @property
    def sink(self) -> Queue | Log | PubSub:
        if self.kind == "queue":
            return _Queue(self)
        if self.kind == "log":
            return _Log(self)
        return _PubSub(self)

    async def through(self, message: Message, send: Callable[[], object]) -> None:
        payload = bytes(message.payload)
        n = self._seen.get(payload, 0)
        self._seen[payload] = n + 1
        faults = self.plan.get(payload, [])
        fault = faults[n] if n < len(faults) else None
        record = Attempt(
            message.headers.get(MESSAGE_ID_HEADER, ""), payload, message.headers.get("producer-attempt", ""), "ok"
        )
        self.attempts.append(record)
        if fault == "before":
            record.outcome = "refused"
            raise ConnectionLost(f"injected: send of {payload!r} refused")
        if fault == "hang":
            record.outcome = "held"
            self.held.set()
            await self.release.wait()
        result = send()
        if asyncio.iscoroutine(result):
            await result
        if fault == "after":
            record.outcome = "lost-answer"
            raise ConnectionLost(f"injected: answer to the send of {payload!r} lost")

    def retries_of(self, payload: bytes) -> list[str]:
        return [a.attempt for a in self.attempts if a.payload == payload]


class _Queue:
    def __init__(self, faulty: FaultySink) -> None:
        self.f, self.inner = faulty, faulty.driver.queue()

    async def send(self, queue: str, message: Message) -> str:
        ids: list[str] = []

        async def go() -> None:
            ids.append(await self.inner.send(queue, message))

        await self.f.through(message, go)
        return ids[0]

    async def receive(self, queue: str, *, wait: float = 0.0, visibility_timeout: float = 30.0) -> QueueDelivery | None:
        return await self.inner.receive(queue, wait=wait, visibility_timeout=visibility_timeout)

    async def ack(self, queue: str, delivery: QueueDelivery) -> None:
        await self.inner.ack(queue, delivery)

    async def nack(self, queue: str, delivery: QueueDelivery) -> None:
        await self.inner.nack(queue, delivery)


class _Log:
    def __init__(self, faulty: FaultySink) -> None:
        self.f, self.inner = faulty, faulty.driver.log()

    async def append(self, log: str, message: Message) -> int:
        offsets: list[int] = []

        async def go() -> None:
            offsets.append(await self.inner.append(log, message))

        await self.f.through(message, go)
        return offsets[0]

    async def read(self, log: str, offset: int, *, limit: int = 100, wait: float = 0.0) -> list[Record]:
        return await self.inner.read(log, offset, limit=limit, wait=wait)

    async def end_offset(self, log: str) -> int:
        return await self.inner.end_offset(log)

    async def commit(self, log: str, group: str, offset: int) -> None:
        await self.inner.commit(log, group, offset)

    async def committed(self, log: str, group: str) -> int | None:
        return await self.inner.committed(log, group)


class _PubSub:
    def __init__(self, faulty: FaultySink) -> None:
        self.f, self.inner = faulty, faulty.driver.pubsub()

    async def publish(self, topic: str, message: Message) -> None:
        await self.f.through(message, lambda: self.inner.publish(topic, message))

    async def subscribe(self, topic: str) -> Subscription:
        return await self.inner.subscribe(topic)


class FlakyState:
    """The key-value state with faults: ``forget`` (keys under a prefix read as absent: lost or
    expired behind the pattern's back), ``unreadable`` (every get raises), ``die_at_put`` (the
    process is killed when it writes its Nth key matching ``die_match``: that write and every
    later call raise :class:`Killed`)."""

    def __init__(self, inner: KeyValue) -> None:
        self.inner = inner
        self.unreadable = False
        self.puts: list[str] = []
        self.dead = False
        self.die_at_put: int | None = None  # 1-based count of matching puts
        self.die_match = ""
        self._matching = 0

    def check(self) -> None:
        if self.dead:
            raise Killed("the consumer's process was killed")

    async def get(self, key: str) -> bytes | None:
        self.check()
        if self.unreadable:
            raise ConnectionLost("injected: state unreachable")
        return await self.inner.get(key)

    async def put(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        self.check()
        if self.die_at_put is not None and self.die_match in key:
            self._matching += 1
            if self._matching >= self.die_at_put:
                self.dead = True
                self.check()
        await self.inner.put(key, value, ttl=ttl)
        self.puts.append(key)

    async def delete(self, key: str) -> bool:
        self.check()
        return await self.inner.delete(key)

    async def exists(self, key: str) -> bool:
        self.check()
        return await self.inner.exists(key)

    def scan(self, prefix: str) -> AsyncIterator[str]:
        self.check()
        return self.inner.scan(prefix)

    async def compare_and_set(self, key: str, expected: bytes | None, new: bytes) -> bool:
        self.check()
        return await self.inner.compare_and_set(key, expected, new)


class FakeClock:
    """A wall clock the test moves by hand."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Sleeps:
    """Records the waits a pattern asks for and only yields to the loop (no real waiting)."""

    def __init__(self) -> None:
        self.asked: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        await asyncio.sleep(0)
