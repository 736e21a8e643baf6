"""Pub/sub under faults: a publisher, subscribers that come, read and leave, and a nemesis,
judged by the fan-out checker (:func:`~prism_testkit.stateful.checkers.fan_out`) against the
backend's declared ``pubsub_delivery`` and nothing more:

- at-most-once: a subscriber may miss messages, never get one twice or one nobody published;
- at-least-once: a subscriber may get a message twice, never miss one acknowledged after its
  subscription was established, as long as it stays subscribed (read to the end);
- exactly-once: both.

With a declared ordering, each subscriber gets the publishes that did not overlap in time in
the order they were made (:func:`~prism_testkit.stateful.checkers.per_key_order`).

The faults its guarantee speaks of, and the rules that inject them:

- a subscriber that leaves, and one that joins late (``close``, ``subscribe``): it is owed only
  what was published while it was subscribed;
- a subscriber's connection and the publisher's broken, delayed or cut (``latency``,
  ``reset_connections``, ``partition``, ``heal``, where the backend is networked): a subscriber
  either subscribes through the fault proxy or directly (``subscribe``'s ``direct``), so the
  publisher may be cut off from subscribers that are not, and the other way round;
- a kill and restart, or pause, of the server (``kill_and_restart``, ``pause`` / ``resume``,
  where the harness controls it). At-most-once pub/sub keeps nothing a restart could lose, so
  its server is killed whether or not it is durable (``ephemeral``); the harness's restart
  replaces the clients, which ends their subscriptions: a subscriber whose client was replaced
  is owed nothing after that (its final drain is recorded as ``info``).

At the end every fault is healed, each subscriber still open is read to the end (to a fence
published after everything, where the topic has total order; else until a quiet wait brings
nothing) and the history is judged.

Not injected: a clock jump (no part of pub/sub's guarantee reads a clock).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import initialize, rule

from prism_testkit import DeliveryGuarantee, Message, Ordering, PrismEnv, Slot, patience, prism_suite
from prism_testkit.driver import Driver
from prism_testkit.interfaces import PubSub, Subscription
from prism_testkit.stateful.checkers import Verdict, fan_out, judged_nothing, per_key_order
from prism_testkit.stateful.history import History, OpType
from prism_testkit.stateful.machine import FaultMachine
from prism_testkit.stateful.nemesis import LATENCIES, Nemesis
from prism_testkit.stateful.runner import StatefulRun

from ._sink_reader import drain_subscription_to_fence, unfenced

pytestmark = prism_suite("stateful_pubsub", backend=Slot.needs("pubsub"))

HEADER = "stateful"
OPEN_AT_MOST = 3  # subscribers open at once (each may hold a connection of its own)
# A subscriber step's receive wait: an empty subscription costs this much real time per step,
# and the shrinker replays every step many times, so it is kept short.
RECEIVE_WAIT = 0.05
READS_PER_TURN = 4  # receives in one turn of a subscriber's read loop, at most
QUIET = 0.1  # s (x slowness): a drain's wait that finds nothing ends it, where no fence can
RESTARTS = frozenset({"kill", "power-cut"})


def encode(value: int) -> Message:
    # one key for every message: a backend ordered per key orders them all
    return Message(str(value).encode(), {HEADER: "pubsub"}, key="k")


def decode(message: Message) -> Any:
    """The value a message carries; anything else as its raw payload (the checker calls it
    unexpected: nobody published it)."""
    if message.headers.get(HEADER) == "pubsub":
        with contextlib.suppress(ValueError):
            return int(message.payload)
    return message.payload


@dataclass
class Subscriber:
    process: str
    subscription: Subscription
    driver: Driver  # the client it subscribed through: replaced by a restart, the subscription ends
    direct: bool  # subscribed directly, not through the fault proxy
    owed_from: int  # the first value published after its subscription was established
    stuck: bool = False  # a receive of unknown outcome may still take a message: none beside it
    # what its read loop got before the end: the end's drain owes only the rest (waiting for a
    # value read long ago held every at-least-once example for the stall bound)
    received: set[Any] = field(default_factory=set)


class PubSubMachine(FaultMachine):
    def __init__(self, run: StatefulRun, slot: str = "backend") -> None:
        properties = run.env.spec(slot).properties
        self.guarantee = properties.pubsub_delivery
        self.ordering = properties.ordering
        ephemeral = [slot] if self.guarantee is DeliveryGuarantee.AT_MOST_ONCE else []
        super().__init__(run, [slot], ephemeral=ephemeral)
        self.slot = slot
        self.topic = self.ns.name("topic")
        self.next_value = 0
        self.acknowledged: set[int] = set()
        self.subscribers: list[Subscriber] = []  # open: subscribed, not closed
        self.orphans: list[Subscription] = []  # subscribed after their subscribe was given up on
        self.count = 0

    def publisher(self) -> PubSub:
        """The pub/sub client publishes go through (the fault proxy, where there is one)."""
        return self.client(self.slot).pubsub()

    def current(self, direct: bool) -> Driver:
        return self.env.driver(self.slot) if direct else self.client(self.slot)

    @rule()
    def publish(self) -> None:
        value, self.next_value = self.next_value, self.next_value + 1
        pubsub = self.publisher()
        outcome = self.attempt(
            "publisher", "publish", lambda: pubsub.publish(self.topic, encode(value)), key=self.topic, value=value
        )
        if outcome.completed:
            outcome.handle.ok()
            self.acknowledged.add(value)

    @rule(direct=st.booleans())
    def subscribe(self, direct: bool) -> None:
        if len(self.subscribers) >= OPEN_AT_MOST:
            return
        self.count += 1
        process = f"subscriber-{self.count}"
        driver = self.current(direct)
        outcome = self.attempt(
            process, "subscribe", lambda: driver.pubsub().subscribe(self.topic), key=self.topic, on_late=self._orphan
        )
        if outcome.completed and outcome.result is not None:
            outcome.handle.ok()
            self.subscribers.append(Subscriber(process, outcome.result, driver, direct, self.next_value))

    def _orphan(self, subscription: object) -> None:
        if isinstance(subscription, Subscription):
            self.orphans.append(subscription)

    def _usable(self) -> list[Subscriber]:
        return [s for s in self.subscribers if not s.stuck]

    @initialize()
    def first_subscribers(self) -> None:
        """Every example starts with two subscribers, one through the fault proxy and one
        direct, so what the first publishes and faults do always reaches one, and every
        message is owed to two, each judged on its own (one that only one of them got is lost
        for the other)."""
        self.subscribe(direct=False)
        self.subscribe(direct=True)

    # No preconditions on who is subscribed: whether a subscribe succeeded depends on faults
    # and timing, and a precondition that does makes Hypothesis's replay flaky.
    @rule(which=st.integers(0, OPEN_AT_MOST - 1))
    def receive(self, which: int) -> None:
        """One turn of a subscriber's read loop: it reads until nothing comes, and reads on
        after an error (its connection broke: the client reconnects), as subscribers do."""
        usable = self._usable()
        if not usable:
            return
        sub = usable[which % len(usable)]
        for _ in range(READS_PER_TURN):
            outcome = self.attempt(
                sub.process,
                "receive",
                lambda: sub.subscription.receive(RECEIVE_WAIT),
                key=self.topic,
                on_late=lambda message: self._late(sub, message),
            )
            if outcome.completed:
                outcome.handle.ok(value=None if outcome.result is None else decode(outcome.result))
                if outcome.result is None:
                    return
                sub.received.add(decode(outcome.result))
            elif isinstance(outcome.error, TimeoutError):
                sub.stuck = True  # abandoned in flight: a second receive beside it is not a client's way
                return

    def _late(self, sub: Subscriber, message: object) -> None:
        """A receive abandoned in flight that got a message after all: delivered to ``sub``."""
        if isinstance(message, Message):
            self.history.invoke(sub.process, "receive", self.topic).ok(value=decode(message))
            sub.received.add(decode(message))

    @rule(which=st.integers(0, OPEN_AT_MOST - 1))
    def close(self, which: int) -> None:
        """The subscriber leaves: owed nothing from now on, and must get nothing more."""
        usable = self._usable()
        if not usable:
            return
        sub = usable[which % len(usable)]
        self.subscribers.remove(sub)
        outcome = self.attempt(sub.process, "close", sub.subscription.close, key=self.topic)
        if outcome.completed:
            outcome.handle.ok()

    # -- the end of an example --------------------------------------------------------------

    def check(self) -> tuple[list[Verdict], str]:
        for orphan in self.orphans:
            with contextlib.suppress(Exception):
                self.loop(orphan.close())
        publisher = self.publisher()
        for sub in self.subscribers:
            self._drain(sub, publisher)
        verdict = fan_out(self.history, self.guarantee)
        verdicts = [verdict]
        if self.ordering is not Ordering.NONE and not judged_nothing(verdicts):
            verdicts.append(per_key_order(self.history))
        return verdicts, f"topic {self.topic} ({self.guarantee}, {self.ordering} order)"

    def _drain(self, sub: Subscriber, publisher: PubSub) -> None:
        handle = self.history.invoke(sub.process, "drain", self.topic)
        if self.current(sub.direct) is not sub.driver:
            handle.info("the subscription ended with its client, which the harness replaced (a restart or reconnect)")
            with contextlib.suppress(Exception):
                self.loop(sub.subscription.close())
            return
        owed = {v for v in self.acknowledged if v >= sub.owed_from} - sub.received
        try:
            got = self.loop(self._read_to_end(sub.subscription, publisher, owed))
        except Exception as exc:
            if self.guarantee is not DeliveryGuarantee.AT_MOST_ONCE:
                raise  # an at-least-once subscription its client kept must read to the end
            handle.info(exc)  # at most once: a subscription may end with its connection
            return
        finally:
            with contextlib.suppress(Exception):
                self.loop(sub.subscription.close())
        handle.ok(value=tuple(got))

    async def _read_to_end(self, subscription: Subscription, publisher: PubSub, owed: set[int]) -> list[Any]:
        """What ``subscription`` was delivered before now: to a fence (total order), or until a
        quiet wait brings nothing; then, where the guarantee owes values still missing, on
        while deliveries keep coming (at-least-once may redeliver late)."""
        quiet = patience.quiet(QUIET)
        if self.ordering is Ordering.TOTAL:
            messages = await drain_subscription_to_fence(publisher, self.topic, subscription, quiet=quiet)
        else:
            messages = []
            while (message := await subscription.receive(quiet)) is not None:
                messages.extend(unfenced([message]))
        got = [decode(m) for m in messages]
        if self.guarantee is DeliveryGuarantee.AT_MOST_ONCE or not owed - set(got):
            return got

        async def receive_late() -> int:
            message = await subscription.receive(quiet)
            if message is not None and unfenced([message]):
                got.append(decode(message))
            return len(got)  # a delivery is progress: it restarts the stall bound

        # Running out is no verdict of its own: a value still owed is judged lost by the checker.
        with contextlib.suppress(patience.Unsettled):
            await patience.until(
                receive_late,
                lambda _: not owed - set(got),
                what=f"pubsub: the values still owed to a subscriber of {self.topic}",
                every=0.0,  # each receive waits the quiet time itself
            )
        return got


def test_pubsub_keeps_its_delivery_guarantee_under_faults(prism_env: PrismEnv, request: pytest.FixtureRequest) -> None:
    run = StatefulRun(prism_env, request)
    run.execute(lambda: PubSubMachine(run))


def test_a_late_subscriber_and_a_leaving_one_are_judged_for_their_time(
    prism_env: PrismEnv, request: pytest.FixtureRequest
) -> None:
    """The rules step by step, without faults: one subscriber gets a message, another joins and
    gets one, the first leaves, a last message is published. Every subscriber's deliveries are
    judged by the end (each fails the example if it breaks the declared guarantee)."""
    run = StatefulRun(prism_env, request)
    machine = PubSubMachine(run)

    def received(process: str) -> int:
        return sum(1 for op in machine.history if op.process == process and op.f == "receive" and op.value is not None)

    def publish_until_received(which: int) -> None:
        """At most once owes no message, and a cluster learns of a new subscription on each of
        its nodes in its own time (a publish before that reaches nobody): publish until one
        message reaches the subscriber, which proves its subscription reaches the publisher."""
        process = machine.subscribers[which].process
        before = received(process)

        def publish_and_read() -> None:
            machine.publish()
            machine.receive(which)

        patience.repeat_until(
            publish_and_read,
            lambda: received(process) > before,
            what=f"a message published to {process}, subscribed, to arrive",
        )

    machine.subscribe(direct=True)
    publish_until_received(0)
    machine.subscribe(direct=False)
    late = machine.subscribers[1].process
    publish_until_received(1)
    machine.close(0)
    assert [s.process for s in machine.subscribers] == [late]
    machine.publish()
    last = machine.next_value - 1
    machine.teardown()
    drains = [op for op in machine.history if op.process == late and op.f == "drain" and op.value is not None]
    assert drains, "the late subscriber was not read to the end"
    assert drains[-1].value[-1:] == (last,), f"the late subscriber read {drains}, not the message after the other left"
    assert run.judged == 1


def without(history: History, process: str, value: Any) -> History:
    """``history`` as it would read had ``process`` never been handed ``value``: its receive of
    it gone, its drain without it."""
    dropped = {
        op.index
        for pair in history.pairs()
        if pair.process == process and pair.f == "receive" and pair.ok and pair.value == value
        for op in pair.ops
    }
    kept = []
    for op in history:
        if op.index in dropped:
            continue
        if op.process == process and op.f == "drain" and op.type is OpType.OK and op.value:
            op = dataclasses.replace(op, value=tuple(v for v in op.value if v != value))
        kept.append(op)
    return History(kept)


def test_a_message_one_of_two_subscribers_missed_is_lost_for_it(
    prism_env: PrismEnv, request: pytest.FixtureRequest
) -> None:
    """The judge this suite relies on, with two subscribers. Two subscribe, messages are
    published until one reaches both, and the run is judged (each subscriber on its own, so
    both must have got everything owed). Then the same history, as it would read had one
    subscriber missed a message the other got (a broker that acknowledged the publish before
    that subscriber's queue had it), must show that message lost for that subscriber, and for
    no other: a judge that counts a message delivered when any subscriber got it, or that
    judges one subscriber for all, passes every backend that drops a message for one of them."""
    run = StatefulRun(prism_env, request)
    machine = PubSubMachine(run)
    machine.subscribe(direct=True)
    machine.subscribe(direct=True)
    processes = [s.process for s in machine.subscribers]
    assert len(processes) == 2, f"two subscriptions asked for, {processes} established"

    def got(process: str) -> set[Any]:
        values: set[Any] = set()
        for op in machine.history:
            if op.process == process and op.type is OpType.OK and op.value is not None:
                values.update(op.value if op.f == "drain" else [op.value] if op.f == "receive" else [])
        return values

    def publish_and_read() -> None:
        machine.publish()
        for which in range(len(processes)):
            machine.receive(which)

    # at most once owes nothing: publish until one message reaches both subscribers
    patience.repeat_until(
        publish_and_read,
        lambda: bool(got(processes[0]) & got(processes[1])),
        what="a message published to two subscribers to reach both",
    )
    machine.teardown()
    assert run.judged == 1
    shared = sorted(got(processes[0]) & got(processes[1]) & machine.acknowledged)
    assert shared, f"no acknowledged message reached both subscribers: {machine.history}"
    value = shared[-1]

    def lost(history: History) -> tuple[list[tuple[Any, Any]], str]:
        verdict = fan_out(history, DeliveryGuarantee.AT_LEAST_ONCE)
        found = [(a.data.get("process"), a.data.get("value")) for a in verdict.anomalies.get("lost", [])]
        return sorted(found, key=repr), verdict.explain()

    # An at-most-once broker may have missed the first messages (a cluster's node had not yet
    # heard of a subscription when they were published): judged at least once, they are lost in
    # the history as it is. Taking one delivery away must add its loss to those, and only it.
    before, explained = lost(machine.history)
    assert all(message not in got(subscriber) for subscriber, message in before), (
        f"the judge this suite relies on found {before} lost, yet the history shows it delivered:\n{explained}"
    )
    for missing in processes:
        after, explained = lost(without(machine.history, missing, value))
        assert after == sorted([*before, (missing, value)], key=repr), (
            f"the judge this suite relies on found {after or 'no loss'} where {missing} alone missed message "
            f"{value!r}, which the other subscriber got (before: {before or 'no loss'}):\n{explained}"
        )


def test_subscribers_across_every_fault_the_backend_offers(prism_env: PrismEnv, request: pytest.FixtureRequest) -> None:
    """A scenario that makes each fault bite: subscribers (one through the fault proxy, one
    direct) have read a message when the fault strikes, and read on through it and after it.
    A fault drawn by the machine seldom lands there (a message handed out again after a
    reconnect needs a read before the fault and two after it). Each fault the backend offers
    strikes once: a connection reset, latency, a partition and its heal, a pause and its resume,
    a kill and restart (after which two fresh subscribers take over: the restart ended the
    others with their clients); a backend that offers none (embedded) runs the reads alone."""
    run = StatefulRun(prism_env, request)
    machine = PubSubMachine(run)
    nemesis = machine.nemesis
    faults: list[Callable[[], object]] = []
    if nemesis.any(Nemesis.has_proxy):
        faults.append(lambda: machine.reset_connections(0))
        faults.append(lambda: machine.latency(0, max(LATENCIES)))
    if nemesis.any(Nemesis.is_proxied):
        faults.append(lambda: machine.partition(0))
    if nemesis.any(nemesis.can_pause):
        faults.append(lambda: machine.pause(0))
    if nemesis.any(nemesis.can_crash):
        faults.append(lambda: nemesis.crash(0))
    elif machine.guarantee is DeliveryGuarantee.AT_MOST_ONCE and prism_env.control("backend") is not None:
        raise AssertionError("at-most-once pub/sub owes nothing across a restart: its server must be killed")

    def reads() -> None:
        machine.publish()
        for which in range(len(machine.subscribers)):
            machine.receive(which)

    def heal() -> None:
        if nemesis.paused:
            machine.resume(0)
        if nemesis.any(Nemesis.is_broken):
            machine.heal(0)

    def fresh_subscribers() -> None:
        while machine.subscribers:
            machine.close(0)
        machine.subscribe(direct=False)
        machine.subscribe(direct=True)

    def struck(kinds: Callable[[str], bool]) -> int:
        return sum(1 for op in machine.history if op.process == "nemesis" and op.type is OpType.INVOKE and kinds(op.f))

    fresh_subscribers()
    for fault in faults or [lambda: None]:
        restarts = struck(RESTARTS.__contains__)
        reads()
        fault()
        reads()
        reads()
        heal()
        reads()
        if struck(RESTARTS.__contains__) > restarts:
            fresh_subscribers()
            reads()
    # a cluster's own failover (Sentinel promoting during a pause or partition) is recorded as
    # what it is, not a fault this scenario struck
    faulted = struck(lambda f: f not in ("heal", "resume", "failover-by-cluster"))
    assert faulted == len(faults), f"{len(faults)} faults offered, {faulted} struck"
    machine.teardown()
    assert run.judged == 1
