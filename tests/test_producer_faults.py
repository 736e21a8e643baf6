"""FaultySink tells a send the backend failed by itself from the faults it injected: the
producer suite's exact-count tests add those retries, so a miscount here hides a real bug."""

from __future__ import annotations

import asyncio
from typing import cast

from prism_testkit import Message, Queue
from prism_testkit.suites._producer_faults import FaultySink


class FlakyQueue:
    """A queue whose first send raises by itself, as a loaded server's timeout does."""

    def __init__(self) -> None:
        self.sends = 0

    async def send(self, queue: str, message: Message) -> str:
        self.sends += 1
        if self.sends == 1:
            raise TimeoutError("no answer")
        return str(self.sends)

    async def receive(self, queue: str, *, wait: float = 0.0, visibility_timeout: float = 30.0) -> None:
        return None

    async def ack(self, queue: str, delivery: object) -> None:
        return None

    async def nack(self, queue: str, delivery: object) -> None:
        return None


class OneQueue:
    def __init__(self) -> None:
        self.inner = FlakyQueue()

    def queue(self) -> FlakyQueue:
        return self.inner


def test_own_failures_count_only_the_backends_failed_sends() -> None:
    faulty = FaultySink("queue", OneQueue())  # type: ignore[arg-type]
    faulty.plan[b"b"] = ["before", "after"]
    raised: list[str] = []

    async def send_all() -> None:
        sink = cast(Queue, faulty.sink)  # a "queue" sink
        for payload in (b"a", b"a", b"b", b"b", b"b"):
            try:
                await sink.send("q", Message(payload))
            except Exception as exc:
                raised.append(type(exc).__name__)

    asyncio.run(send_all())
    assert raised == ["TimeoutError", "ConnectionLost", "ConnectionLost"]
    assert [(a.payload, a.outcome) for a in faulty.attempts] == [
        (b"a", "unanswered"),
        (b"a", "ok"),
        (b"b", "refused"),
        (b"b", "lost-answer"),
        (b"b", "ok"),
    ]
    assert faulty.own_failures(b"a") == 1
    assert faulty.own_failures(b"b") == 0  # injected faults are not the backend's own
