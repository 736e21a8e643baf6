"""The queue machine of the stateful suites: the durable queue under faults, with producers,
consumers that ack, nack or crash, and a nemesis. Not a checker, so it stays beside the suites
that subclass it: a machine recording the history that
:func:`~prism_testkit.stateful.checkers.total_queue` judges.

A consumed message is one that was received *and processed*: the ``dequeue`` op is invoked at
receive and completes when the consumer settles it, ok when it acks (whatever the ack's own
outcome: an ack that did not land only means a redelivery, a duplicate the guarantee allows),
``fail`` when the consumer nacks or crashes before processing, so the message must come back.
A queue that drops a message handed to a consumer that never acked it (acknowledging on
delivery) therefore shows up as ``lost``.

Time is part of the model: every step lets real time pass, so a delivery held across steps may
outlive its visibility timeout. An ack or nack refused with ``DeliveryNotFound`` after that is
what the contract specifies (the message is due for redelivery): the dequeue fails, and the
message must come back. Refused before its timeout could have run out, it is a bug.

At the end every fault is healed, unsettled deliveries are abandoned, the queue is drained
past every visibility timeout and the total-queue checker judges the history against the
backend's declared queue delivery.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import rule

import prism_testkit.simulation.clock as clocks
from prism_testkit import Message, Queue, patience
from prism_testkit.errors import DeliveryNotFound
from prism_testkit.interfaces import QueueDelivery
from prism_testkit.stateful.checkers import Verdict, total_queue
from prism_testkit.stateful.history import OpHandle
from prism_testkit.stateful.machine import FaultMachine
from prism_testkit.stateful.runner import StatefulRun

VISIBILITY = 1.0  # s: short, so crashed consumers' messages come back within the test
# Before this share of VISIBILITY has passed since the receive was invoked, no server may have
# expired the delivery yet (client and server clocks start it at slightly different moments).
EXPIRY_SAFE = 0.8
DRAIN_WAIT = 0.2  # s: one receive's wait while draining
# A consumer step's receive wait: an empty queue costs this much real time per step, and the
# shrinker replays every step many times, so it is kept short (the drain waits longer).
RECEIVE_WAIT = 0.05
# A receive whose outcome is unknown may have taken a message under the interface's default
# visibility timeout (the server saw the request, the client never learnt what it got): while
# an acknowledged message is missing, the drain waits that long before calling it lost. The
# hiding can start as late as the heal (a partition held the request; healing delivers it), so
# the wait counts from the start of the drain, plus a margin.
# A server restart may do the same to a message a consumer held: its own visibility timer can
# restart at the default (JetStream redelivers a -NAK-delayed message after its ack_wait, 30 s,
# once restarted), so the message comes back late, not never.
DEFAULT_VISIBILITY = 30.0
UNKNOWN_RECEIVE_MARGIN = 5.0
RESTARTS = frozenset({"kill", "power-cut"})


async def drain_past(
    take: Callable[[], Awaitable[bool]], missing: Callable[[], bool], *, deadline: float, missing_deadline: float
) -> None:
    """The end of a queue's drain: ``take`` (one receive or poll; whether it took a message)
    until one takes nothing once ``deadline`` passed, or ``missing_deadline`` while ``missing()``
    (an acknowledged message was not taken yet). Both are moments when a held message is due
    back: a visibility timeout (x slowness) past when it was held, not a bound of patience's.
    Returns, never raises: the checker judges what was taken (a message still missing is lost)."""
    while True:
        if await take():
            continue
        due = missing_deadline if missing() else deadline
        if clocks.monotonic() >= due:  # hand-rolled: its deadlines are visibility timeouts; it never raises
            return


@dataclass
class Taken:
    """A delivery a consumer holds: its dequeue op, and when the receive was invoked."""

    handle: OpHandle
    delivery: QueueDelivery
    at: float

    def may_have_expired(self) -> bool:
        return clocks.monotonic() - self.at >= VISIBILITY * EXPIRY_SAFE


@dataclass
class Held:
    """Messages a consumer took and did not settle: invisible until their visibility timeout."""

    until: dict[Any, float] = field(default_factory=dict)

    def hold(self, value: Any, visibility: float) -> None:
        self.until[value] = max(self.until.get(value, 0.0), clocks.monotonic() + visibility)

    def release(self, value: Any) -> None:
        self.until.pop(value, None)

    def deadline(self, grace: float) -> float:
        """When every held message should be visible again (now, when none is held)."""
        return max(self.until.values(), default=clocks.monotonic() - grace) + grace


class QueueMachine(FaultMachine):
    """Values 0, 1, 2... sent as messages of the queue in ``slot``; subclasses change how a value
    becomes a message (:meth:`encode`, :meth:`decode`) and which queue client carries it."""

    def __init__(self, run: StatefulRun, slots: list[str] | None = None, slot: str = "backend") -> None:
        super().__init__(run, slots or [slot])
        self.slot = slot
        self.name = self.ns.name("q")
        self.guarantee = self.env.spec(slot).properties.queue_delivery
        self.next_value = 0
        self.consumers = 0
        self.held: list[Taken] = []  # received, not yet settled
        self.invisible = Held()
        self.acknowledged: set[int] = set()  # enqueues that completed ok
        self.consumed: set[int] = set()  # values of ok dequeues
        self.unknown_receive = False  # some receive's outcome is unknown (see DEFAULT_VISIBILITY)

    def queue(self) -> Queue:
        """The queue client operations use (through the fault proxy when there is one)."""
        return self.client(self.slot).queue()

    def settled_queue(self) -> Queue:
        """The queue the final drain uses, once every fault is healed."""
        return self.env.driver(self.slot).queue()

    def encode(self, value: int) -> Message:
        return Message(str(value).encode(), {"stateful": "queue"})

    def decode(self, delivery: QueueDelivery) -> int:
        return int(delivery.message.payload)

    async def take(self, queue: Queue, *, wait: float, visibility: float) -> QueueDelivery | None:
        """One receive; subclasses judge what a broken delivery means."""
        return await queue.receive(self.name, wait=wait, visibility_timeout=visibility)

    def _hidden(self, delivery: object) -> None:
        """A receive abandoned in flight that answered later: its message is invisible now."""
        if isinstance(delivery, QueueDelivery):
            self.invisible.hold(self.decode(delivery), VISIBILITY)

    @rule()
    def enqueue(self) -> None:
        self.send(self.encode)

    def send(self, encode: Callable[[int], Message]) -> None:
        value, self.next_value = self.next_value, self.next_value + 1
        message = encode(value)
        outcome = self.attempt(
            "producer", "enqueue", lambda: self.queue().send(self.name, message), key=self.name, value=value
        )
        if outcome.completed:
            outcome.handle.ok()
            self.acknowledged.add(value)

    @rule()
    def receive(self) -> None:
        # Each receive is its own consumer process: several deliveries may be held at once.
        self.consumers += 1
        invoked = clocks.monotonic()
        outcome = self.attempt(
            f"consumer-{self.consumers}",
            "dequeue",
            lambda: self.take(self.queue(), wait=RECEIVE_WAIT, visibility=VISIBILITY),
            key=self.name,
            on_late=self._hidden,
        )
        if not outcome.completed:
            self.unknown_receive = True
            return
        delivery = outcome.result
        if delivery is None:
            outcome.handle.ok(value=None)
            return
        self.invisible.hold(self.decode(delivery), VISIBILITY)
        self.held.append(Taken(outcome.handle, delivery, invoked))

    def _settle(self, which: int, how: str) -> None:
        taken = self.held.pop(which % len(self.held))
        handle, delivery = taken.handle, taken.delivery
        value = self.decode(delivery)
        queue = self.queue()
        action = queue.ack if how == "ack" else queue.nack
        try:
            self.bounded(action(self.name, delivery))
        except DeliveryNotFound:
            if not (self.faulted or taken.may_have_expired()):
                raise
            handle.fail("its visibility timeout ran out before the consumer settled it")
            return
        except Exception:
            if not self.faulted:
                raise
        if how == "ack":
            handle.ok(value=value)  # processed; a lost ack only causes a redelivery
            self.invisible.release(value)
            self.consumed.add(value)
        else:
            handle.fail("nacked before processing")

    # No preconditions on what is held: whether a receive got a message depends on timing, and
    # a precondition that does makes Hypothesis's replay flaky. With nothing held, a no-op.
    @rule(which=st.integers(0, 7))
    def ack(self, which: int) -> None:
        if self.held:
            self._settle(which, "ack")

    @rule(which=st.integers(0, 7))
    def nack(self, which: int) -> None:
        if self.held:
            self._settle(which, "nack")

    @rule(which=st.integers(0, 7))
    def crash_consumer(self, which: int) -> None:
        """The consumer dies holding the message: neither ack nor nack, only the timeout."""
        if self.held:
            self.held.pop(which % len(self.held)).handle.fail("consumer crashed before processing")

    def check(self) -> tuple[list[Verdict], str]:
        for taken in self.held:
            taken.handle.fail("never processed")
        self.held.clear()
        drained = self.recovering(self._drain)
        self.history.invoke("drainer", "drain", self.name).ok(value=tuple(drained))
        return [
            total_queue(self.history, self.guarantee),
            *self.extra_verdicts(),
        ], f"queue {self.name} ({self.guarantee})"

    def extra_verdicts(self) -> list[Verdict]:
        """Verdicts of subclass-specific checks, judged with the total-queue one."""
        return []

    async def _drain(self) -> list[int]:
        """Receive and ack until the queue stays empty after every visibility timeout ran out."""
        queue = self.settled_queue()
        values: list[int] = []
        slowness = patience.slowness()  # a loaded server redelivers late: its timers fire late
        deadline = self.invisible.deadline(grace=DRAIN_WAIT * slowness)
        # While an acknowledged message is still missing, wait one more visibility timeout (x
        # slowness) for its redelivery before the checker may call it lost.
        missing_wait = deadline + VISIBILITY * slowness
        restarted = any(op.process == "nemesis" and op.f in RESTARTS for op in self.history)
        if self.unknown_receive or restarted:
            missing_wait = max(deadline, clocks.monotonic()) + DEFAULT_VISIBILITY + UNKNOWN_RECEIVE_MARGIN * slowness

        async def take() -> bool:
            delivery = await self.take(queue, wait=DRAIN_WAIT, visibility=DEFAULT_VISIBILITY)
            if delivery is None:
                return False
            await queue.ack(self.name, delivery)
            values.append(self.decode(delivery))
            return True

        await drain_past(
            take,
            lambda: bool(self.acknowledged - self.consumed - set(values)),
            deadline=deadline,
            missing_deadline=missing_wait,
        )
        return values
