"""Faults and seams the producer and consumer suites inject (no backend knowledge here).

* :class:`FaultySink` wraps a queue, log or topic and fails chosen send attempts, either before
  the send (a definite failure: nothing arrived) or after it (the broker stored the message but
  the answer was lost: an unknown outcome), or holds a send until released; every attempt is
  recorded, so each retry is visible.
* :class:`FlakyState` wraps the key-value state: it can forget keys (state lost or expired behind
  the pattern's back), refuse reads, or die (a killed process: nothing it does after the kill
  reaches the store) at a chosen write.
* :class:`Sleeps` records the backoff waits a pattern asks for and yields instead of sleeping
  (the wall clock the test moves is :class:`prism_testkit.simulation.clock.ManualClock`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Literal, cast
from weakref import WeakKeyDictionary

from prism_testkit import Driver, KeyValue, Message
from prism_testkit.errors import ConnectionLost
from prism_testkit.faults.interpose import Call, Interposed
from prism_testkit.interfaces import MESSAGE_ID_HEADER, Log, PubSub, Queue

from ._doubles import Killed

Kind = Literal["queue", "log", "pubsub"]
When = Literal["before", "after", "hang"]


@dataclass
class Attempt:
    message_id: str
    payload: bytes
    attempt: str
    # "ok"; "refused" (failed before the send), "lost-answer" (sent, answer lost), "held" (all
    # injected); "unanswered": no fault was injected, yet the backend's own send raised (a loaded
    # machine's timeout, say), which the producer must retry as any failure
    outcome: str


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
        # An attempt's fault, from its send's before hook to its after hook (the same Call);
        # weak, so a send that raised in between leaves nothing behind.
        self._pending: WeakKeyDictionary[Call, tuple[When | None, Attempt]] = WeakKeyDictionary()

    @property
    def sink(self) -> Queue | Log | PubSub:
        if self.kind == "queue":
            return cast(Queue, self._faulty(self.driver.queue(), Queue, "send"))
        if self.kind == "log":
            return cast(Log, self._faulty(self.driver.log(), Log, "append"))
        return cast(PubSub, self._faulty(self.driver.pubsub(), PubSub, "publish"))

    def _faulty(self, inner: object, surface: type, verb: str) -> Interposed[object]:
        return Interposed(inner, surface=surface, before={verb: self._before_send}, after={verb: self._after_send})

    async def _before_send(self, call: Call) -> None:
        message = cast(Message, call.arguments["message"])
        payload = bytes(message.payload)
        n = self._seen.get(payload, 0)
        self._seen[payload] = n + 1
        faults = self.plan.get(payload, [])
        fault = faults[n] if n < len(faults) else None
        record = Attempt(
            message.headers.get(MESSAGE_ID_HEADER, ""),
            payload,
            message.headers.get("producer-attempt", ""),
            "unanswered",
        )
        self.attempts.append(record)
        self._pending[call] = (fault, record)
        if fault == "before":
            record.outcome = "refused"
            raise ConnectionLost(f"injected: send of {payload!r} refused")
        if fault == "hang":
            record.outcome = "held"
            self.held.set()
            await self.release.wait()

    async def _after_send(self, call: Call, result: object) -> None:
        fault, record = self._pending.pop(call)
        if fault == "after":
            record.outcome = "lost-answer"
            raise ConnectionLost(f"injected: answer to the send of {record.payload!r} lost")
        if record.outcome == "unanswered":
            record.outcome = "ok"

    def retries_of(self, payload: bytes) -> list[str]:
        return [a.attempt for a in self.attempts if a.payload == payload]

    def own_failures(self, payload: bytes) -> int:
        """Sends of ``payload`` the backend failed by itself (``"unanswered"``): each is one more
        retry than the plan asked for, and maybe stored (one more copy where resends are kept)."""
        return sum(a.outcome == "unanswered" for a in self.attempts if a.payload == payload)


class FlakyState(Interposed[KeyValue]):
    """The key-value state with faults: ``forget`` (keys under a prefix read as absent: lost or
    expired behind the pattern's back), ``unreadable`` (every get raises), ``die_at_put`` (the
    process is killed when it writes its Nth key matching ``die_match``: that write and every
    later call raise :class:`Killed`)."""

    def __init__(self, inner: KeyValue) -> None:
        super().__init__(
            inner,
            surface=KeyValue,
            before_every=lambda call: self.check(),
            before={"get": self._reading, "put": self._writing},
            after={"put": lambda call, result: self.puts.append(str(call.arguments["key"]))},
        )
        self.unreadable = False
        self.puts: list[str] = []
        self.dead = False
        self.die_at_put: int | None = None  # 1-based count of matching puts
        self.die_match = ""
        self._matching = 0

    def check(self) -> None:
        if self.dead:
            raise Killed("the consumer's process was killed")

    def _reading(self, call: Call) -> None:
        if self.unreadable:
            raise ConnectionLost("injected: state unreachable")

    def _writing(self, call: Call) -> None:
        if self.die_at_put is not None and self.die_match in str(call.arguments["key"]):
            self._matching += 1
            if self._matching >= self.die_at_put:
                self.dead = True
                self.check()


class Sleeps:
    """Records the waits a pattern asks for and only yields to the loop (no real waiting)."""

    def __init__(self) -> None:
        self.asked: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        await asyncio.sleep(0)
