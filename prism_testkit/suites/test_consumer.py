"""Acceptance suite of the consumer pattern (the seeds' consumer: state in key-value, a restart
resumes; issue #40), as an adversary of what it guarantees.

Runs once per (source x state) combination, and every test once per messaging interface the
source backend provides (queue, log, pub/sub). Messages are put on the source directly, with a
``prism-message-id`` as a producer would set it. The kill tests simulate a consumer process
dying between handling a message and saving its state (the state store becomes unreachable to
the dead process at the chosen write); a new consumer over the same state then shows what was
lost (never anything) and what was handled twice (exactly what the kill point predicts).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prism_testkit import Capability, Message, PrismEnv, Slot, patience, prism_suite
from prism_testkit.interfaces import MESSAGE_ID_HEADER, KeyValue, Log, PubSub, Queue
from prism_testkit.isolation import Namespace
from prism_testkit.pattern_sdk.lifecycle import (
    AlreadyStarted,
    AlreadyStopped,
    HealthStatus,
    LifecycleState,
    NotStarted,
    PatternStopped,
    SlotMismatch,
)
from prism_testkit.patterns.consumer import Consumer, ConsumerConfig, ConsumerConfigurationError

from ._doubles import Killed
from ._helpers import SHORT_TTL, prism_settings
from ._producer_faults import FlakyState, Kind, Sleeps

pytestmark = prism_suite(
    "consumer",
    source=Slot.one_of("queue", "log", "pubsub"),
    state=Slot.needs("keyvalue"),
)

KINDS: list[Kind] = ["queue", "log", "pubsub"]
FENCE = 999  # a last record: once it is handled, so is everything a log held before it
kinds = pytest.mark.parametrize("kind", KINDS)


def msg(i: int, tag: str = "c") -> Message:
    return Message(f"{tag}{i}".encode(), {MESSAGE_ID_HEADER: f"{tag}-id-{i}"})


def seq(message: Message) -> int:
    return int(bytes(message.payload)[1:])


class Recorder:
    """The application's handler: records every call; can block, fail or kill on chosen ones."""

    def __init__(self) -> None:
        self.handled: list[Message] = []
        self.fail: dict[int, int] = {}  # seq -> how many more times to raise
        self.block: int | None = None
        self.blocked = asyncio.Event()
        self.release = asyncio.Event()
        self.changed = asyncio.Event()

    async def __call__(self, message: Message) -> None:
        n = seq(message)
        if self.fail.get(n, 0) > 0:
            self.fail[n] -= 1
            raise RuntimeError(f"injected: handler fails on {n}")
        if self.block == n:
            self.blocked.set()
            await self.release.wait()
        self.handled.append(message)
        self.changed.set()

    @property
    def seqs(self) -> list[int]:
        return [seq(m) for m in self.handled]

    async def until(self, done: Callable[[list[int]], bool], what: str) -> None:
        """Wait until the handled sequence satisfies ``done`` (woken by each handling; the
        bound only guards against a consumer that stopped consuming)."""

        async def wait() -> None:
            while not done(self.seqs):
                self.changed.clear()
                await self.changed.wait()

        try:
            await asyncio.wait_for(wait(), patience.bound("stall"))
        except TimeoutError:
            raise AssertionError(f"waited for {what}; handled so far: {self.seqs}") from None


class Bench:
    def __init__(self, prism_env: PrismEnv, kind: Kind, ns: Namespace) -> None:
        driver = prism_env.driver("source")
        if not driver.supports(Capability(kind)):
            pytest.skip(f"{driver.name} does not provide {kind}")
        self.kind = kind
        self.driver = driver
        self.source_name = ns.name("in")
        self.ns = ns
        self.kv: KeyValue = prism_env.driver("state").keyvalue()
        self.sleeps = Sleeps()

    @property
    def source(self) -> Queue | Log | PubSub:
        interfaces: dict[str, Callable[[], Queue | Log | PubSub]] = {
            "queue": self.driver.queue,
            "log": self.driver.log,
            "pubsub": self.driver.pubsub,
        }
        return interfaces[self.kind]()

    def consumer(
        self, handler: Callable[[Message], Awaitable[None]], state: object = None, **config: object
    ) -> Consumer:
        defaults: dict[str, object] = {
            "source": self.source_name,
            "name": "c",
            "state_prefix": self.ns.name("state/"),
            "poll_wait": patience.handed("poll"),
            # a message in hand must not come back while the consumer works: a redelivery is
            # a test's point only where it passes SHORT_TTL itself
            "visibility_timeout": patience.handed("lease"),
            "retry_backoff": 0.01,
            "retry_backoff_max": 0.02,
        }
        return Consumer(
            self.source,
            state if state is not None else self.kv,  # type: ignore[arg-type]
            handler,
            ConsumerConfig.model_validate({**defaults, **config}),
            sleep=self.sleeps,
        )

    async def put(self, *messages: Message, to: str | None = None) -> None:
        """Put ``messages`` on the bench's source (or on the source named ``to``)."""
        source, name = self.source, to or self.source_name
        for m in messages:
            if isinstance(source, Queue):
                await source.send(name, m)
            elif isinstance(source, Log):
                await source.append(name, m)
            else:
                await source.publish(name, m)


@asynccontextmanager
async def bench(prism_env: PrismEnv, kind: Kind) -> AsyncIterator[Bench]:
    async with prism_env.example() as ns:
        yield Bench(prism_env, kind, ns)


async def ended(consumer: Consumer) -> None:
    """Wait until the killed consumer's loop has ended (its task is gone)."""
    await patience.until(
        lambda: asyncio.sleep(0, len(consumer.tasks)), lambda n: n == 0, what="the killed consumer's loop to end"
    )


def durable(kind: Kind) -> None:
    if kind == "pubsub":
        pytest.skip("pub/sub keeps nothing for a consumer that is not subscribed: there is nothing to resume")


# --- basic consumption ---------------------------------------------------------------------


@kinds
@given(count=st.integers(1, 15))
@prism_settings
async def test_consumes_every_message_once_in_order(prism_env: PrismEnv, kind: Kind, count: int) -> None:
    """Bug caught: a message skipped, handled twice without a fault, or out of order."""
    async with bench(prism_env, kind) as b:
        handler = Recorder()
        async with b.consumer(handler) as consumer:
            await b.put(*(msg(i) for i in range(count)))
            # what the consumer says it processed, not what the handler saw: a consumer that loses
            # a message while counting it processed ends the wait too, and fails below
            await patience.until(
                lambda: asyncio.sleep(0, consumer.metrics.processed),
                lambda n: n >= count,
                what=f"{count} messages processed",
            )
            m = consumer.metrics
            # At least once: a redelivery (a visibility timeout run out on a slow machine) is
            # allowed and must be skipped by its processed mark, never handled again.
            assert (m.processed, m.failed) == (count, 0)
            assert m.received == m.processed + m.duplicates_skipped
        assert handler.seqs == list(range(count)), "a message lost, handled twice or out of order"
        assert [dict(x.headers)[MESSAGE_ID_HEADER] for x in handler.handled] == [f"c-id-{i}" for i in range(count)]


@kinds
async def test_state_is_persisted_and_a_restart_resumes(prism_env: PrismEnv, kind: Kind) -> None:
    """A stopped consumer's position (log) or acks and marks (queue) are in the state: a new
    consumer over it handles only what came after. Bug caught: a position kept in memory only,
    saved before handling, or read from the wrong key (a restart replays everything or skips)."""
    durable(kind)
    async with bench(prism_env, kind) as b:
        first = Recorder()
        async with b.consumer(first) as consumer:
            await b.put(*(msg(i) for i in range(4)))
            await first.until(lambda s: len(s) >= 4, "the first 4 handled")
        if kind == "log":
            assert await consumer.saved_position() == 4
            assert consumer.metrics.position == 4
        await b.put(*(msg(i) for i in range(4, 7)))
        second = Recorder()
        async with b.consumer(second) as again:
            await second.until(lambda s: len(s) >= 3, "the 3 new ones handled")
            if kind == "log":
                assert again.position == 7
        assert first.seqs == [0, 1, 2, 3]
        assert second.seqs == [4, 5, 6]


@kinds
async def test_consumers_by_name_and_by_source_keep_their_state_apart(prism_env: PrismEnv, kind: Kind) -> None:
    """Consumers sharing one state: ``x`` on two sources that carry the same message ids (an
    event published to two destinations), and (but on a queue, whose consumers compete) ``y``
    on the first source too. Each handles every message of its own source once, and after a
    restart (log, queue) only what came since. Bugs caught: a position saved per consumer name
    only (two sources resume from one position: records skipped or handled again), processed
    marks kept per source only (a second consumer name of a topic skips what the first handled)."""
    async with bench(prism_env, kind) as b:
        a, other = b.source_name, b.ns.name("in-b")
        counts = {a: 3, other: 2}  # unequal: one shared position fits neither source
        apart = [("x", a), ("x", other)] + ([("y", a)] if kind != "queue" else [])

        async def took(consumer: Consumer, count: int, what: str) -> None:
            await patience.until(lambda: asyncio.sleep(0, consumer.metrics.received), lambda n: n >= count, what=what)

        async def run(first: int) -> dict[tuple[str, str], list[int]]:
            """Start every consumer, put messages ``first``.. on each source, wait until each took
            its source's messages, stop them all; what each handled."""
            handlers = {pair: Recorder() for pair in apart}
            consumers = [b.consumer(handlers[(name, source)], name=name, source=source) for name, source in apart]
            for consumer in consumers:
                await consumer.start()
            # a fence behind each source's messages (a new id each run): once a consumer took as
            # many messages as that, handled or skipped as processed, it has taken them all
            fence = FENCE + first
            try:
                for source, count in counts.items():
                    await b.put(*(msg(i) for i in range(first, first + count)), msg(fence), to=source)
                for consumer, (name, source) in zip(consumers, apart, strict=True):
                    await took(consumer, counts[source] + 1, f"{name} on {source} to take its messages and the fence")
            finally:
                for consumer in consumers:
                    await consumer.stop()
            return {pair: [n for n in handler.seqs if n != fence] for pair, handler in handlers.items()}

        handled = await run(0)
        want = {(name, source): list(range(counts[source])) for name, source in apart}
        assert handled == want, f"a consumer skipped or handled again what its own source held: {handled}"
        if kind == "pubsub":
            return  # pub/sub keeps nothing for a consumer that is not subscribed: nothing to resume
        # each source's fence was handled before the stop: the restart resumes after it
        again = await run(10)
        want = {(name, source): list(range(10, 10 + counts[source])) for name, source in apart}
        assert again == want, f"a restarted consumer resumed from another source's (or name's) state: {again}"


@pytest.mark.parametrize("kind", ["queue", "pubsub"])
async def test_a_resend_with_the_same_id_is_handled_once(prism_env: PrismEnv, kind: Kind) -> None:
    """A message republished with the same id (a producer's retry) is handled once; its mark is
    in the state. Bug caught: processed marks not kept (or not checked)."""
    async with bench(prism_env, kind) as b:
        handler = Recorder()
        async with b.consumer(handler) as consumer:
            await b.put(msg(0), msg(1), msg(0), msg(2))
            await handler.until(lambda s: len(s) >= 3, "3 distinct handled")
            await b.put(msg(9))  # a fence: handled after everything before it
            await handler.until(lambda s: 9 in s, "the fence handled")
        assert handler.seqs == [0, 1, 2, 9]
        # a queue that drops resends by id (queue.dedup) never hands the second copy over
        dropped_by_queue = kind == "queue" and b.driver.supports(Capability.QUEUE_DEDUP)
        # a redelivery may add skips (at least once); the resend itself must be one of them
        assert dropped_by_queue or consumer.metrics.duplicates_skipped >= 1


# --- killed between processing and saving --------------------------------------------------


@given(count=st.integers(2, 10), commit_every=st.integers(1, 4), kill=st.integers(1, 10))
@prism_settings
async def test_log_consumer_killed_before_saving_redoes_exactly_the_unsaved(
    prism_env: PrismEnv, count: int, commit_every: int, kill: int
) -> None:
    """The consumer dies at its ``kill``-th position save (after the handler returned, before
    the save lands). A new consumer handles every record from the last saved position: nothing
    is skipped, and the duplicates are exactly the records handled after the last save. Bug
    caught: a position saved before the handler (a record skipped), a restart from a position
    held in memory, a save that covers more than what was handled."""
    async with bench(prism_env, "log") as b:
        state = FlakyState(b.kv)
        state.die_at_put, state.die_match = kill, "/position"
        first = Recorder()
        dead = b.consumer(first, state=state, commit_every=commit_every)
        await dead.start()
        await b.put(*(msg(i) for i in range(count)))
        saves = count // commit_every
        if kill <= saves:
            await ended(dead)
            assert state.dead
            handled_before = kill * commit_every  # the save that died covered these
            saved = (kill - 1) * commit_every
        else:
            # every record handled, or the loop died (it must not: a wait that ends either way)
            await patience.until(
                lambda: asyncio.sleep(0, (len(first.seqs), len(dead.tasks))),
                lambda seen: seen[0] >= count or seen[1] == 0,
                what="every record handled",
            )
            assert not state.dead or len(first.seqs) == count, "the consumer died at a save it should not have made"
            handled_before, saved = count, saves * commit_every
        report = await dead.stop()
        if kill <= saves:
            assert report.errors, "a consumer whose loop died reports it"
        else:
            saved = count if not state.dead else saved  # its stop saved the rest
        assert first.seqs == list(range(handled_before))
        assert await b.consumer(Recorder()).saved_position() == (saved or None)
        await b.put(msg(FENCE))  # handled after every record before it: the successor's end
        second = Recorder()
        async with b.consumer(second):
            await second.until(lambda s: FENCE in s, "the successor to reach the fence")
        assert second.seqs == [*range(saved, count), FENCE], "a restart must resume at the saved position"
        duplicates = sorted(set(first.seqs) & set(second.seqs))
        assert duplicates == list(range(saved, handled_before))


@pytest.mark.parametrize("die_at", ["mark", "ack"])
async def test_queue_consumer_killed_before_the_ack(prism_env: PrismEnv, die_at: str) -> None:
    """Killed after the handler but before its mark is saved, the redelivered message is handled
    again (the predicted duplicate); killed after the mark but before the ack, the redelivery is
    acknowledged without being handled again. Nothing is lost either way. Bug caught: an ack
    before the handler (a lost message), marks never written or never checked."""
    async with bench(prism_env, "queue") as b:
        state = FlakyState(b.kv)
        first = Recorder()
        # the redelivery of what the dead consumer held is this test's point
        dead = b.consumer(first, state=state, visibility_timeout=SHORT_TTL)
        if die_at == "mark":
            state.die_at_put, state.die_match = 1, "/done/"
        else:

            class DieOnAck:
                def __init__(self, inner: Queue) -> None:
                    self.inner = inner

                async def send(self, queue: str, message: Message) -> str:
                    return await self.inner.send(queue, message)

                async def receive(self, queue: str, **kw: float) -> object:
                    return await self.inner.receive(queue, **kw)

                async def ack(self, queue: str, delivery: object) -> None:
                    raise Killed("killed before the ack")

                async def nack(self, queue: str, delivery: object) -> None:
                    raise Killed("killed")

            dead = Consumer(DieOnAck(b.driver.queue()), state, first, dead.config, sleep=b.sleeps)
        await dead.start()
        await b.put(msg(0), msg(1))
        await ended(dead)
        await dead.stop()
        assert first.seqs == [0]
        second = Recorder()
        async with b.consumer(second) as consumer:
            await second.until(lambda s: 1 in s, "the second message handled")
            if die_at == "mark":
                await second.until(lambda s: 0 in s, "the unmarked message redelivered and handled again")
            else:
                # wait for the redelivery after its visibility timeout: skipped, acked
                await patience.until(
                    lambda: asyncio.sleep(0, consumer.metrics.duplicates_skipped),
                    lambda n: n >= 1,
                    what="the marked message's redelivery",
                )
        if die_at == "mark":
            assert sorted(second.seqs) == [0, 1]
        else:
            assert second.seqs == [1], "a message marked processed was handled again"


# --- handler failures ----------------------------------------------------------------------


@kinds
async def test_a_failing_handler_is_retried_and_order_kept(prism_env: PrismEnv, kind: Kind) -> None:
    """A handler failing fewer than max_retries times is called again with backoff; the record
    after it waits. Bug caught: the message dropped after an error, retried without backoff."""
    async with bench(prism_env, kind) as b:
        handler = Recorder()
        handler.fail[1] = 2
        async with b.consumer(handler, max_retries=3) as consumer:
            await b.put(msg(0), msg(1), msg(2))
            await handler.until(lambda s: len(s) >= 3, "all handled")
            assert consumer.metrics.handler_errors == 2
        assert handler.seqs == [0, 1, 2]
        assert b.sleeps.asked[:2] == [0.01, 0.02]


async def test_a_log_consumer_never_skips_a_record_its_handler_keeps_failing(prism_env: PrismEnv) -> None:
    """After max_retries a log consumer stays on the record (health degraded) and goes on once
    the handler recovers. Bug caught: a record skipped after an error (the position moved)."""
    async with bench(prism_env, "log") as b:
        handler = Recorder()
        handler.fail[1] = 1_000_000
        async with b.consumer(handler, max_retries=1) as consumer:
            await b.put(msg(0), msg(1), msg(2))
            await patience.until(
                lambda: asyncio.sleep(0, consumer.metrics.handler_errors), lambda n: n >= 4, what="retries"
            )
            assert handler.seqs == [0]
            assert (await consumer.health()).status is HealthStatus.DEGRADED
            assert await consumer.saved_position() == 1
            handler.fail[1] = 0
            await handler.until(lambda s: len(s) >= 3, "the rest after recovery")
        assert handler.seqs == [0, 1, 2]
        assert await consumer.saved_position() == 3


async def test_a_queue_consumer_gives_up_by_nacking(prism_env: PrismEnv) -> None:
    """After max_retries a queue message is nacked (the queue redelivers it) and counted failed.
    Bug caught: a failing message acked (lost) instead."""
    async with bench(prism_env, "queue") as b:
        handler = Recorder()
        handler.fail[0] = 2
        async with b.consumer(handler, max_retries=1) as consumer:
            await b.put(msg(0))
            await handler.until(lambda s: 0 in s, "the redelivered message handled")
            assert consumer.metrics.failed == 1
        assert handler.seqs == [0]


# --- lifecycle -----------------------------------------------------------------------------


@kinds
async def test_graceful_stop_finishes_the_message_in_hand(prism_env: PrismEnv, kind: Kind) -> None:
    """stop() lets the handler in progress finish and saves its position before returning,
    clean. Bug caught: a stop that cancels the handler mid-way, or forgets to save."""
    async with bench(prism_env, kind) as b:
        handler = Recorder()
        handler.block = 1
        consumer = b.consumer(handler)
        await consumer.start()
        await b.put(msg(0), msg(1), msg(2))
        await asyncio.wait_for(handler.blocked.wait(), patience.bound("stall"))
        stopping = asyncio.ensure_future(consumer.stop(within=patience.bound("calm-op")))
        await asyncio.wait_for(consumer.stop_requested.wait(), patience.bound("calm-op"))
        handler.release.set()
        report = await stopping
        assert report.drained
        assert report.clean
        assert handler.seqs == [0, 1]
        if kind == "log":
            assert await consumer.saved_position() == 2
            again = Recorder()
            async with b.consumer(again):
                await again.until(lambda s: len(s) >= 1, "the rest")
            assert again.seqs == [2]


@kinds
async def test_forced_stop_after_the_bound_leaves_the_message_for_the_next_consumer(
    prism_env: PrismEnv, kind: Kind
) -> None:
    """A handler that never returns holds the drain past its bound: the stop is forced, returns
    soon after the bound and names the message left; a queue redelivers it and a log consumer's
    successor handles it (never a skip). Bug caught: a stop that hangs with its handler, or a
    position saved past the unfinished record."""
    durable(kind)
    async with bench(prism_env, kind) as b:
        handler = Recorder()
        handler.block = 0
        # the queue hands the abandoned message to the successor once this runs out: the point
        consumer = b.consumer(handler, visibility_timeout=SHORT_TTL)
        await consumer.start()
        await b.put(msg(0), msg(1))
        await asyncio.wait_for(handler.blocked.wait(), patience.bound("stall"))
        loop = asyncio.get_running_loop()
        began = loop.time()
        report = await asyncio.wait_for(consumer.stop(within=0.3), patience.bound("calm-op"))
        assert loop.time() - began >= 0.27
        assert report.forced
        assert report.exit_code == 2
        assert len(report.left) == 1
        assert kind in report.left[0]
        assert handler.seqs == []
        again = Recorder()
        async with b.consumer(again):
            await again.until(lambda s: len(s) >= 2, "both handled by the successor")
        assert sorted(again.seqs) == [0, 1]


@kinds
async def test_lifecycle_misuse_raises_typed_errors(prism_env: PrismEnv, kind: Kind) -> None:
    async with bench(prism_env, kind) as b:
        consumer = b.consumer(Recorder())
        with pytest.raises(NotStarted):
            await consumer.poll()
        with pytest.raises(NotStarted):
            await consumer.stop()
        assert (await consumer.health()).status is HealthStatus.UNHEALTHY
        await consumer.start()
        assert (await consumer.health()).healthy
        with pytest.raises(AlreadyStarted):
            await consumer.start()
        await consumer.stop()
        assert consumer.state is LifecycleState.STOPPED
        with pytest.raises(PatternStopped):
            await consumer.poll()
        with pytest.raises(AlreadyStopped):
            await consumer.stop()


async def test_configuration_is_checked_before_anything_runs(prism_env: PrismEnv) -> None:
    """Bug caught: a consumer built without a state (it could not resume) or on a non-messaging
    source, failing only at its first poll."""
    kv = prism_env.driver("state").keyvalue()
    source_driver = prism_env.driver("source")
    kind = next(k for k in KINDS if source_driver.supports(Capability(k)))
    source = getattr(source_driver, kind)()
    handler = Recorder()
    with pytest.raises(SlotMismatch, match="slot 'state'"):
        Consumer(source, None, handler)  # type: ignore[arg-type]
    with pytest.raises(SlotMismatch, match="slot 'source'"):
        Consumer(kv, kv, handler)
    with pytest.raises(ConsumerConfigurationError):
        Consumer(source, kv, "not a function")  # type: ignore[arg-type]
    assert ConsumerConfig.model_validate({"poll_wait": "100ms"}).poll_wait == 0.1
