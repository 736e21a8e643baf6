"""The consumer under faults (issue #40's stateful suite for the consumer): a log consumer that
keeps its position in key-value, killed at chosen points, restarted as a new instance over the
same state, with the nemesis on the backend holding both the log and the state.

What it guarantees, judged by the ``consumer-resume`` checker against the history:

- **at-least-once, never a skip**: every record appended to the log is handled by some instance
  (``lost`` otherwise), and each instance handles the records from where it resumed, in order,
  none left out (``skip``); a record handled and then gone from the log is ``lost`` too (a
  failover of a backend that does not promise to survive one may drop it: tolerated there);
- **exactly the duplicates the history predicts**: an instance resumes from the position its
  predecessors last saved, which the history tells: the last save that completed ok, or a save
  whose outcome is unknown (it may have landed, even late). Resuming below it re-handles records the
  saves had covered (``unpredicted-duplicate``); resuming from a position no save wrote, or past
  what was handled, skips records (``resumed-past-progress``). So the records handled twice are
  exactly those handled after the last save that landed.

The faults its guarantee speaks of, and the rules that inject them:

- the consumer killed in the middle of processing (``kill_at``, handling): nothing of it is
  saved or acked, so its successor handles the record or message again;
- killed between processing and saving its state (``kill_at``, before-save: the
  next save of the position raises and nothing the instance does reaches a store any more; it
  has handled up to ``commit_every`` records since its last save, which its successor handles
  again);
- killed just after a save landed (``kill_at``, after-save): no duplicate and no skip (a consumer
  that saves before handling skips the record it was about to handle);
- killed at any other point between polls, or stopped gracefully (``stop``; a graceful stop saves
  the position, so its successor handles nothing twice);
- a server kill or pause, and proxy faults (``latency``, ``reset_connections``, ``partition``,
  ``heal``) from the nemesis: a save or a read of unknown outcome; a poll that does not answer
  within its bound is a consumer that died in the middle of it.

Not injected: handler failures (the consumer suite covers retries), and a lost state (the
consumer then restarts from its configured start, which is a documented re-read, not a fault).
"""

from __future__ import annotations

import functools
import itertools
import json
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import rule

import prism_testkit.simulation.clock as clocks
from prism_testkit import Driver, KeyValue, Log, Message, PrismEnv, Slot, patience, prism_suite
from prism_testkit.interfaces import MESSAGE_ID_HEADER, Record
from prism_testkit.patterns.consumer import Consumer, ConsumerConfig
from prism_testkit.stateful.checkers import Anomaly, Verdict
from prism_testkit.stateful.history import DEFINITE_FAILURES, History
from prism_testkit.stateful.machine import FaultMachine
from prism_testkit.stateful.runner import StatefulRun

from ._doubles import Killed
from ._queue_machine import DEFAULT_VISIBILITY, RESTARTS, UNKNOWN_RECEIVE_MARGIN, drain_past

pytestmark = prism_suite("stateful_consumer", backend=Slot.needs("log", "keyvalue"))

COMMIT_EVERY = 3  # records handled between two saves of the position
VISIBILITY = 1.0  # s: a queue message held by a killed consumer comes back this soon
DRAIN_GRACE = 0.5  # s: past every visibility timeout, the queue consumer's drain listens this much longer
BATCH = 4  # records read per poll


def encode(value: int) -> Message:
    return Message(str(value).encode(), {"stateful": "consumer"})


class Current:
    """An interface of the slot's current client: the machine sets :attr:`current` before each
    operation, outside the loop (a restart or a proxy replaces the driver)."""

    def __init__(self, current: Any) -> None:
        self.current = current

    def __getattr__(self, name: str) -> Any:
        return getattr(self.current, name)


@dataclass
class Instance:
    """One consumer process: what it resumed from, handled and saved, and how it ends."""

    number: int
    consumer: Consumer | None = None
    resumed: int | None = None  # the position it started from (None: its start did not answer)
    handled: list[int] = field(default_factory=list)  # values, in the order handled
    dead: bool = False
    die_at_save: str | None = None  # "before" / "after": killed at its next save of the position
    die_at_handle: bool = False  # killed at its next handler call, before any effect

    def check(self) -> None:
        if self.dead:
            raise Killed(f"consumer instance {self.number} was killed")


@dataclass
class Save:
    instance: int
    position: int  # the log position saved, or the value of the message a queue mark is for
    outcome: str  # "ok", "fail" (never reached the store), "info" (may have landed)
    seq: int = 0  # when it was known to have landed (or was attempted), among handlings and saves


class RecordedState:
    """The consumer's key-value state as one instance reaches it: saves (a log position, or a
    queue message's processed mark; ``saved`` tells them from other keys) are recorded, outcome
    and all, and a killed instance reaches nothing."""

    def __init__(
        self,
        inner: KeyValue,
        instance: Instance,
        saves: list[Save],
        saved: Callable[[str, bytes], int | None],
        clock: Iterator[int],
    ) -> None:
        self.inner, self.instance, self.saves, self.saved, self.clock = inner, instance, saves, saved, clock

    async def get(self, key: str) -> bytes | None:
        self.instance.check()
        return await self.inner.get(key)

    async def put(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        instance = self.instance
        instance.check()
        saved = self.saved(key, value)
        if saved is None:
            await self.inner.put(key, value, ttl=ttl)
            return
        save = Save(instance.number, saved, "info", next(self.clock))
        self.saves.append(save)
        if instance.die_at_save == "before":
            instance.dead = True  # killed between processing and saving: the save never leaves
            save.outcome = "fail"
            instance.check()
        try:
            await self.inner.put(key, value, ttl=ttl)  # raising or abandoned: unknown, it may have landed
        except DEFINITE_FAILURES:
            save.outcome = "fail"  # refused (a TTL the store does not support, say): nothing landed
            raise
        save.outcome, save.seq = "ok", next(self.clock)
        if instance.die_at_save == "after":
            instance.dead = True
            instance.check()

    async def delete(self, key: str) -> bool:
        self.instance.check()
        return await self.inner.delete(key)

    async def exists(self, key: str) -> bool:
        self.instance.check()
        return await self.inner.exists(key)

    def scan(self, prefix: str) -> Any:
        self.instance.check()
        return self.inner.scan(prefix)

    async def compare_and_set(self, key: str, expected: bytes | None, new: bytes) -> bool:
        self.instance.check()
        return await self.inner.compare_and_set(key, expected, new)


def judge_resumes(instances: Sequence[Instance], saves: Sequence[Save], offsets: Mapping[int, int]) -> Verdict:
    """The ``consumer-resume`` verdict: what each instance of ``instances`` resumed from and
    handled, against ``saves`` and the log as it ended (``offsets``: value -> offset)."""
    found: dict[str, list[Anomaly]] = defaultdict(list)
    empty = History()

    def add(name: str, message: str, **data: Any) -> None:
        found[name].append(Anomaly(name, message, empty, data))

    gone = sorted({value for instance in instances for value in instance.handled} - set(offsets))
    if gone:
        # Records handled, so once in the log, are gone from it: a loss (tolerated only after a
        # failover of a backend that makes no promise to survive one). The log's offsets then
        # no longer say what each instance read: resumes, skips and duplicates go unjudged.
        add("lost", f"records handled, then gone from the log: values {gone}", values=gone)
        counts = {"records": len(offsets), "instances": len(instances), "saves": len(saves), "lost": 1}
        return Verdict("consumer-resume", None, dict(found), {}, counts)
    handled_end = 0  # everything below it was handled by some instance before
    predicted = duplicates = 0
    seen: set[int] = set()
    for instance in instances:
        if instance.resumed is None:
            continue
        earlier = [s for s in saves if s.instance < instance.number]
        last_ok = max((i for i, s in enumerate(earlier) if s.outcome == "ok"), default=None)
        # The last save known to have landed, or any save of unknown outcome: one abandoned
        # in flight may land late, even after a later save (a killed process's last write).
        possible = {0} if last_ok is None else {earlier[last_ok].position}
        possible |= {s.position for s in earlier if s.outcome == "info"}
        start = instance.resumed
        if start not in possible:
            low = min(possible)
            name = "unpredicted-duplicate" if start < low else "resumed-past-progress"
            add(
                name,
                f"instance {instance.number} resumed from {start}; the saves before it allow {sorted(possible)}",
                instance=instance.number,
                resumed=start,
                allowed=sorted(possible),
            )
        if start > handled_end:
            add(
                "skip",
                f"instance {instance.number} resumed from {start}, past records never handled "
                f"({handled_end}..{start - 1})",
                instance=instance.number,
            )
        handled = [offsets[value] for value in instance.handled]
        expected = list(range(start, start + len(handled)))
        if handled != expected:
            add(
                "skip",
                f"instance {instance.number} handled offsets {handled}, not {expected} from its resume position",
                instance=instance.number,
            )
        predicted += max(0, min(handled_end, start + len(handled)) - start)
        duplicates += len([o for o in handled if o in seen])
        seen.update(handled)
        handled_end = max(handled_end, start + len(handled))
    lost = sorted(set(offsets.values()) - seen)
    if lost:
        add("lost", f"records never handled: offsets {lost}", offsets=lost)
    if duplicates != predicted:
        add(
            "unpredicted-duplicate",
            f"{duplicates} records handled twice, the resume positions predict {predicted}",
            duplicates=duplicates,
            predicted=predicted,
        )
    counts = {
        "records": len(offsets),
        "instances": len([i for i in instances if i.resumed is not None]),
        "saves": len(saves),
        "duplicates": duplicates,
        **{name: len(group) for name, group in found.items()},
    }
    return Verdict("consumer-resume", None, dict(found), {}, counts)


def drain_until_stable(read_all: Callable[[], Mapping[int, int]], drain: Callable[[int], object]) -> Mapping[int, int]:
    """The log as it ended after every handling (value -> offset), once a last consumer drained it.

    ``read_all`` reads the whole log; ``drain(end)`` runs a last consumer until it handled up to
    offset ``end``. An append of unknown outcome may land late, after a read: drain to the end
    that read found, read again, and drain again while a read finds records no drain aimed at.
    The last read is returned, taken after the last drain, so a record handled and absent from
    it is gone, never merely late (a read that finds fewer records ends the loop too)."""
    offsets = read_all()
    while True:
        drain(len(offsets))
        ended = read_all()
        if all(value in offsets for value in ended):
            return ended
        offsets = ended


class ConsumerMachine(FaultMachine):
    def __init__(self, run: StatefulRun) -> None:
        super().__init__(run, ["backend"])
        self.name = self.ns.name("events")
        self.config = ConsumerConfig(
            source=self.name,
            name="stateful",
            batch_size=BATCH,
            commit_every=COMMIT_EVERY,
            poll_wait=patience.handed("poll"),
            state_prefix=self.ns.prefix + "state/",
            graceful_timeout=patience.bound("faulted-op"),
        )
        self.next_value = 0
        self.instances: list[Instance] = []
        self.current: Instance | None = None
        self.acknowledged: set[int] = set()  # values whose append (or send) was answered
        self.held_at: float | None = None  # when an instance last died holding a delivery, maybe
        self.saves: list[Save] = []
        self.clock = itertools.count()
        self.handlings: list[tuple[int, int, int]] = []  # (seq, instance, value), in the order handled
        self.source = Current(self.source_of(self.client("backend")))
        self.state = Current(self.client("backend").keyvalue())

    def source_of(self, driver: Driver) -> Any:
        return driver.log()

    def saved(self, key: str, value: bytes) -> int | None:
        """The position a put of ``key`` saves (None: not a save)."""
        return int(json.loads(value)["next"]) if key == self.config.position_key() else None

    def _refresh(self) -> None:
        """Point the consumers at the slot's current client (before each operation)."""
        driver = self.client("backend")
        self.source.current, self.state.current = self.source_of(driver), driver.keyvalue()

    # --- the consumer's processes ----------------------------------------------------------

    def log(self) -> Log:
        return self.client("backend").log()

    def _consumer(self, instance: Instance, source: Any, state: Any) -> Consumer:
        async def handle(message: Message) -> None:
            if instance.die_at_handle:
                instance.dead = True  # killed in the middle of processing: no effect
            instance.check()
            value = int(message.payload)
            instance.handled.append(value)
            self.handlings.append((next(self.clock), instance.number, value))

        recorded = RecordedState(state, instance, self.saves, self.saved, self.clock)
        return Consumer(source, recorded, handle, self.config, background=False)

    def _instance(self) -> Instance | None:
        """The running instance, or a new one started over the saved state."""
        if self.current is not None:
            return self.current
        instance = Instance(len(self.instances))
        self.instances.append(instance)
        consumer = self._consumer(instance, self.source, self.state)
        self._refresh()
        outcome = self.attempt(f"consumer-{instance.number}", "resume", consumer.start, key=self.name)
        if not outcome.completed:
            instance.dead = True  # its start did not answer: that process is gone
            return None
        instance.consumer = consumer
        instance.resumed = consumer.position
        outcome.handle.ok(offset=instance.resumed)
        self.current = instance
        return instance

    def _die(self, instance: Instance) -> None:
        instance.dead = True
        if self.current is instance:
            self.current = None

    # --- rules -----------------------------------------------------------------------------

    @rule(n=st.integers(1, BATCH))
    def append(self, n: int) -> None:
        for _ in range(n):
            value, self.next_value = self.next_value, self.next_value + 1
            outcome = self.attempt(
                "producer", "append", functools.partial(self.produce, value), key=self.name, value=value
            )
            if not outcome.completed:
                return  # no answer: this producer gives up its batch
            outcome.handle.ok(offset=outcome.result if isinstance(outcome.result, int) else None)
            self.acknowledged.add(value)

    def produce(self, value: int) -> Awaitable[Any]:
        """The append of ``value`` (the client is looked up here, outside the loop)."""
        return self.log().append(self.name, encode(value))

    def _poll(self, instance: Instance) -> None:
        consumer = instance.consumer
        assert consumer is not None

        async def poll() -> int | None:
            try:
                return await consumer.poll()
            except Killed:
                return None

        before = len(instance.handled)
        self._refresh()
        outcome = self.attempt(f"consumer-{instance.number}", "poll", poll, key=self.name)
        if not outcome.completed:
            self._die(instance)  # no answer within its bound (or an error): that process died in it
            self.held_at = clocks.monotonic()
            return
        handled = tuple(instance.handled[before:])
        if outcome.result is None:
            outcome.handle.info(f"killed, having handled {handled}")
            self._die(instance)
            self.held_at = clocks.monotonic()
            return
        outcome.handle.ok(value=handled)

    @rule()
    def poll(self) -> None:
        instance = self._instance()
        if instance is not None:
            self._poll(instance)

    @rule(at=st.sampled_from(["handling", "before-save", "after-save"]))
    def kill_at(self, at: str) -> None:
        """The instance is killed at its next handler call (in the middle of processing), at its
        next save before it leaves (between processing and saving: what it handled since its
        last save is handled again by its successor), or just after a save landed (nothing
        twice, nothing skipped). Then it polls, so the kill fires now if the poll gets there
        (else later)."""
        instance = self._instance()
        if instance is None:
            return
        if at == "handling":
            instance.die_at_handle = True
        else:
            instance.die_at_save = at.removesuffix("-save")
        self._poll(instance)

    def kill_before_save(self) -> None:
        self.kill_at("before-save")

    def kill_after_save(self) -> None:
        self.kill_at("after-save")

    @rule(graceful=st.booleans())
    def stop(self, graceful: bool) -> None:
        """The instance is killed between polls (its last save stands), or stopped gracefully
        (the stop saves the position: its successor handles nothing twice)."""
        instance = self.current
        if instance is None or instance.consumer is None:
            return
        if not graceful:
            self.history.invoke(f"consumer-{instance.number}", "kill", self.name).ok()
            self._die(instance)
            return
        consumer = instance.consumer

        async def stop() -> bool:
            try:
                await consumer.stop(within=self.config.graceful_timeout)
            except Killed:
                return False  # an armed kill fired at the stop's save
            return True

        self._refresh()
        outcome = self.attempt(f"consumer-{instance.number}", "stop", stop)
        if outcome.completed:
            if outcome.result:
                outcome.handle.ok()
            else:
                outcome.handle.info("killed at its save")
                self.held_at = clocks.monotonic()
        else:
            self.held_at = clocks.monotonic()
        self._die(instance)

    # --- the end ---------------------------------------------------------------------------

    def check(self) -> tuple[list[Verdict], str]:
        if self.current is not None:
            self._die(self.current)  # its successor, the drainer, resumes from what it saved
        # A late append (of unknown outcome) is drained and judged, not called lost.
        what = "a last consumer's drain to the log's end"
        offsets = drain_until_stable(
            lambda: self.recovering(self._read_all),
            lambda end: self.recovering(functools.partial(self._drain, end), what),
        )
        self.history.invoke("reader", "drain", self.name, offset=0).ok(value=tuple(sorted(offsets.items())))
        return [judge_resumes(self.instances, self.saves, offsets)], f"consumer of log {self.name}"

    async def _read_all(self) -> dict[int, int]:
        """value -> offset of every record in the log, read once healed."""
        log = self.env.driver("backend").log()
        end = await log.end_offset(self.name)
        found: list[Record] = []
        while len(found) < end:
            batch = await log.read(self.name, len(found), limit=100)
            if not batch:
                break
            found += batch
        return {int(record.message.payload): record.offset for record in found}

    async def _drain(self, end: int) -> None:
        """A last instance over the settled backend, polled until it handled up to ``end``."""
        instance = Instance(len(self.instances))
        self.instances.append(instance)
        driver = self.env.driver("backend")
        consumer = self._consumer(instance, driver.log(), driver.keyvalue())
        await consumer.start()
        instance.consumer, instance.resumed = consumer, consumer.position
        await patience.until(
            self._polled(consumer),
            lambda position: position >= end,
            what=f"the last consumer's position to reach the log's end ({end})",
        )
        await consumer.stop(within=patience.bound("calm-op"))

    @staticmethod
    def _polled(consumer: Consumer) -> Callable[[], Any]:
        async def poll() -> int:
            await consumer.poll()
            return consumer.position or 0

        return poll


class QueueConsumerMachine(ConsumerMachine):
    """The same consumer over a queue: its state is a processed mark per message (keyed by the
    message id), saved after the handler and before the ack. Killed before the mark lands, the
    message comes back after its visibility timeout and is handled again (a predicted
    duplicate); killed after the mark landed (before the ack), it comes back and is acked as a
    duplicate without being handled (a handling after a landed mark is ``unpredicted-duplicate``).
    A message acked and never handled is ``lost``."""

    def __init__(self, run: StatefulRun) -> None:
        super().__init__(run)
        self.config = self.config.model_copy(update={"visibility_timeout": VISIBILITY})
        self.marks = self.config.mark_key("v")[: -len("v")]

    def source_of(self, driver: Driver) -> Any:
        return driver.queue()

    def saved(self, key: str, value: bytes) -> int | None:
        return int(key[len(self.marks) + 1 :]) if key.startswith(self.marks + "v") else None

    def produce(self, value: int) -> Awaitable[Any]:
        message = Message(str(value).encode(), {MESSAGE_ID_HEADER: f"v{value}", "stateful": "consumer"})
        return self.client("backend").queue().send(self.name, message)

    def log(self) -> Log:
        raise AssertionError("the queue consumer machine has no log")

    def check(self) -> tuple[list[Verdict], str]:
        if self.current is not None:
            self._die(self.current)
        handled = self.recovering(self._drain_queue)
        self.history.invoke("drainer", "drain", self.name).ok(value=tuple(handled))
        return [self._judge_queue()], f"consumer of queue {self.name}"

    async def _drain_queue(self) -> list[int]:
        """A last instance over the settled backend, polled until every message a killed
        instance held came back (visibility timeouts, x slowness) and none is missing, or the
        wait for a missing one ran out."""
        instance = Instance(len(self.instances))
        self.instances.append(instance)
        driver = self.env.driver("backend")
        consumer = self._consumer(instance, driver.queue(), driver.keyvalue())
        await consumer.start()
        instance.consumer, instance.resumed = consumer, 0
        slowness = patience.slowness()
        # A message comes back only from an instance that died holding it: past its visibility
        # timeout (x slowness). With none held, the first empty poll ends the drain.
        deadline = clocks.monotonic()
        if self.held_at is not None:
            deadline = max(deadline, self.held_at + (VISIBILITY + DRAIN_GRACE) * slowness)
        restarted = any(op.process == "nemesis" and op.f in RESTARTS for op in self.history)
        missing_deadline = deadline + VISIBILITY * slowness
        if restarted or self.faulted:  # a server's own timer may restart at its default
            missing_deadline = deadline + DEFAULT_VISIBILITY + UNKNOWN_RECEIVE_MARGIN * slowness

        async def take() -> bool:
            return bool(await consumer.poll())

        def missing() -> bool:
            return bool(self.acknowledged - {value for _, _, value in self.handlings})

        await drain_past(take, missing, deadline=deadline, missing_deadline=missing_deadline)
        await consumer.stop(within=patience.bound("calm-op"))
        return instance.handled

    def _judge_queue(self) -> Verdict:
        found: dict[str, list[Anomaly]] = defaultdict(list)
        empty = History()

        def add(name: str, message: str, **data: Any) -> None:
            found[name].append(Anomaly(name, message, empty, data))

        landed: dict[int, int] = {}  # value -> when its first mark was known to have landed
        for save in self.saves:
            if save.outcome == "ok":
                landed[save.position] = min(save.seq, landed.get(save.position, save.seq))
        handled: defaultdict[int, list[int]] = defaultdict(list)
        for seq, instance, value in self.handlings:
            if value >= self.next_value:
                add("unexpected", f"value {value} was handled but never sent", value=value)
            if handled[value] and value in landed and landed[value] < seq:
                add(
                    "unpredicted-duplicate",
                    f"value {value} was handled again by instance {instance} after its processed mark had landed",
                    value=value,
                    instance=instance,
                )
            handled[value].append(seq)
        lost = sorted(self.acknowledged - set(handled))
        if lost:
            add("lost", f"messages sent and never handled: {lost}", values=lost)
        duplicates = sum(len(seqs) - 1 for seqs in handled.values())
        counts = {
            "sent": len(self.acknowledged),
            "handled": len(handled),
            "marks": len(self.saves),
            "duplicates": duplicates,
            **{name: len(group) for name, group in found.items()},
        }
        return Verdict("consumer-marks", None, dict(found), {}, counts)


def test_a_consumer_killed_anywhere_handles_everything_duplicating_only_what_it_had_not_saved(
    prism_env: PrismEnv, request: pytest.FixtureRequest
) -> None:
    run = StatefulRun(prism_env, request)
    run.execute(lambda: ConsumerMachine(run))


def test_killed_between_processing_and_saving_the_successor_handles_exactly_those_again(
    prism_env: PrismEnv, request: pytest.FixtureRequest
) -> None:
    """Step by step: five records; the consumer handles three and is killed at their save, so
    its successor resumes from 0 and handles those three again (the predicted duplicates) and
    the rest once. Fails if the kill never fires or the successor does not re-handle them."""
    run = StatefulRun(prism_env, request)
    machine = ConsumerMachine(run)
    machine.append(5)
    machine.kill_before_save()
    first = machine.instances[0]
    assert first.dead, "the kill at the save never fired"
    assert first.handled == [0, 1, 2], first.handled
    assert [s.outcome for s in machine.saves] == ["fail"]
    machine.poll()
    second = machine.instances[1]
    assert second.resumed == 0
    assert second.handled[:3] == [0, 1, 2], second.handled
    machine.teardown()
    assert run.judged == 1


@prism_suite("stateful_consumer", backend=Slot.needs("queue", "keyvalue"))
def test_a_queue_consumer_killed_anywhere_handles_every_message_again_only_when_unmarked(
    prism_env: PrismEnv, request: pytest.FixtureRequest
) -> None:
    run = StatefulRun(prism_env, request)
    run.execute(lambda: QueueConsumerMachine(run))


@prism_suite("stateful_consumer", backend=Slot.needs("queue", "keyvalue"))
def test_a_queue_consumer_killed_before_its_mark_handles_the_redelivery(
    prism_env: PrismEnv, request: pytest.FixtureRequest
) -> None:
    """Step by step: one message; the consumer handles it and is killed at its processed mark,
    so the message comes back after its visibility timeout and its successor handles it again
    (the predicted duplicate). Fails if the kill never fires or the redelivery is not handled."""
    run = StatefulRun(prism_env, request)
    machine = QueueConsumerMachine(run)
    machine.append(1)
    machine.kill_before_save()
    first = machine.instances[0]
    assert first.dead, "the kill at the mark never fired"
    assert first.handled == [0], first.handled
    machine.teardown()
    assert [value for _, _, value in machine.handlings] == [0, 0], machine.handlings
    assert run.judged == 1


@prism_suite("stateful_consumer", backend=Slot.needs("queue", "keyvalue"))
def test_a_queue_consumer_killed_after_its_mark_acks_the_redelivery_unhandled(
    prism_env: PrismEnv, request: pytest.FixtureRequest
) -> None:
    """Step by step: one message; the consumer handles it, its processed mark lands, and it is
    killed before the ack, so the message comes back after its visibility timeout: its
    successor must ack it as a duplicate without handling it (the mark says it was). Fails if
    the consumer does not read its marks (an unpredicted duplicate)."""
    run = StatefulRun(prism_env, request)
    machine = QueueConsumerMachine(run)
    machine.append(1)
    machine.kill_after_save()
    first = machine.instances[0]
    assert first.dead, "the kill after the mark never fired"
    assert [save.outcome for save in machine.saves if save.outcome != "fail"] == ["ok"], machine.saves
    machine.teardown()
    assert [value for _, _, value in machine.handlings] == [0], machine.handlings
    assert run.judged == 1
