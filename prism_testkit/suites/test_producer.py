"""Acceptance suite of the producer pattern (the seeds' producer: batching, retries,
deduplication, metrics, health; issue #40), as an adversary of what it guarantees.

Runs once per (sink x state) combination, and every sink test once per messaging interface the
sink backend provides (queue, log, pub/sub; pub/sub is at-most-once fan-out, so the reader
subscribes before anything is published). The upstream floor: basic publish, batched publish
(by size and by interval), publish with retry, deduplication, metrics. Beyond it: a sink that
fails in the middle of a batch (definitely, or after storing the message with its answer lost),
dedup state lost, expired or unreadable in the middle of a window, a failed publish that must
not be deduplicated later, a graceful stop that drains within its bound, a forced stop after it,
and lifecycle misuse. Time in the window is a clock the test moves; backoff waits are recorded,
not slept.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import asynccontextmanager
from typing import TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prism_testkit import Capability, Message, PrismEnv, Slot, patience, prism_suite
from prism_testkit.errors import NotSupported
from prism_testkit.interfaces import MESSAGE_ID_HEADER, KeyValue, QueueDelivery, Record
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
from prism_testkit.patterns.producer import (
    HEADER_ATTEMPT,
    Producer,
    ProducerConfig,
    ProducerConfigurationError,
    PublishAbandoned,
    PublishFailed,
    PublishOutcome,
    PublishStatus,
    content_digest,
)
from prism_testkit.simulation.clock import ManualClock

from ._helpers import prism_settings
from ._producer_faults import FaultySink, FlakyState, Kind, Sleeps
from ._sink_reader import SinkReader

pytestmark = prism_suite(
    "producer",
    sink=Slot.one_of("queue", "log", "pubsub"),
    state=Slot.needs("keyvalue"),
)

KINDS: list[Kind] = ["queue", "log", "pubsub"]
T = TypeVar("T")
NEVER = 3600.0  # a batch interval no test waits for: only size, flush() or stop() publish
PRODUCER_HEADERS = (MESSAGE_ID_HEADER, HEADER_ATTEMPT)


def user_view(message: Message) -> tuple[bytes, dict[str, str], str | None]:
    headers = {k: v for k, v in message.headers.items() if k not in PRODUCER_HEADERS}
    return bytes(message.payload), headers, message.key


class Bench:
    """One sink destination of one kind, a reader on it, the state, and the fault seams."""

    def __init__(self, prism_env: PrismEnv, kind: Kind, ns: Namespace) -> None:
        driver = prism_env.driver("sink")
        if not driver.supports(Capability(kind)):
            pytest.skip(f"{driver.name} does not provide {kind}")
        self.kind = kind
        self.driver = driver
        self.dedup_sink = kind == "queue" and driver.supports(Capability.QUEUE_DEDUP)
        self.destination = ns.name("out")
        self.ns = ns
        self.reader = SinkReader(lambda: driver, kind, self.destination, prism_env.spec("sink").properties.ordering)
        self.faulty = FaultySink(kind, driver)
        self.state = FlakyState(prism_env.driver("state").keyvalue())
        self.clock = ManualClock(1.7e9)
        self.sleeps = Sleeps()

    def producer(self, **config: object) -> Producer:
        defaults: dict[str, object] = {
            "destination": self.destination,
            "state_prefix": self.ns.name("dedup/"),
            "retry_backoff": 0.01,
            "retry_backoff_max": 0.04,
        }
        return Producer(
            self.faulty.sink,
            ProducerConfig.model_validate({**defaults, **config}),
            state=self.state,
            clock=self.clock,
            sleep=self.sleeps,
        )

    async def delivered(self) -> list[Message]:
        """Everything the destination got, read as a downstream consumer would."""
        return await self.reader.until_now(_deadline())


def _deadline() -> float:
    import prism_testkit.simulation.clock as clocks

    return clocks.monotonic() + patience.bound("stall")


@asynccontextmanager
async def bench(prism_env: PrismEnv, kind: Kind) -> AsyncIterator[Bench]:
    async with prism_env.example() as ns:
        b = Bench(prism_env, kind, ns)
        await b.reader.open()
        try:
            yield b
        finally:
            await b.reader.close()


async def settled(futures: list[asyncio.Future[PublishOutcome]]) -> None:
    """Wait for every future (not for the clock): a bound only against a hang."""
    if futures:
        await asyncio.wait_for(asyncio.wait(futures), patience.bound("calm-op"))


kinds = pytest.mark.parametrize("kind", KINDS)


def arrived_once_each(got: list[Message], payloads: list[bytes], own: list[int], dedup: bool) -> list[bytes]:
    """The payloads delivered, with the copies a send the backend failed by itself may have left
    (stored, then sent again) folded into one, where the sink keeps resends: each such copy
    arrives next to its message. A repeat of any other message stays, to fail the test."""
    maybe_twice = {p for p, n in zip(payloads, own, strict=True) if n and not dedup}
    seen: list[bytes] = []
    for m in got:
        payload = bytes(m.payload)
        if not (seen and seen[-1] == payload and payload in maybe_twice):
            seen.append(payload)
    return seen


message_lists = st.lists(
    st.builds(
        Message,
        payload=st.binary(max_size=48),
        headers=st.dictionaries(st.sampled_from(["a", "b", "trace"]), st.text(max_size=6), max_size=2),
        key=st.none() | st.sampled_from(["k1", "k2"]),
    ),
    min_size=1,
    max_size=12,
)


# --- basic and batched publish -------------------------------------------------------------


@kinds
@given(messages=message_lists)
@prism_settings
async def test_basic_publish_delivers_each_message_once_in_order(
    prism_env: PrismEnv, kind: Kind, messages: list[Message]
) -> None:
    """Bug caught: a publish that reports success before (or without) the sink accepting it,
    headers or key dropped on the way, or messages reordered."""
    async with bench(prism_env, kind) as b:
        async with b.producer() as producer:
            outcomes = [await producer.publish(m) for m in messages]
        got = await b.delivered()
        assert [user_view(m) for m in got] == [user_view(m) for m in messages]
        assert [o.status for o in outcomes] == [PublishStatus.PUBLISHED] * len(messages)
        assert [m.headers[MESSAGE_ID_HEADER] for m in got] == [o.message_id for o in outcomes]
        assert len({o.message_id for o in outcomes}) == len(messages), "message ids must be unique"
        assert all(m.headers[HEADER_ATTEMPT] == "1" for m in got)
        metrics = producer.metrics
        assert metrics.published == len(messages)
        assert metrics.bytes_published == sum(len(m.payload) for m in messages)
        assert metrics.batches_published == len(messages)  # batch_size 1: one batch per message
        assert (metrics.failed, metrics.deduplicated, metrics.retries, metrics.pending) == (0, 0, 0, 0)


@kinds
@given(size=st.integers(2, 5), full=st.integers(1, 3), rest=st.integers(0, 4))
@prism_settings
async def test_batches_by_size_and_a_partial_batch_waits_for_flush(
    prism_env: PrismEnv, kind: Kind, size: int, full: int, rest: int
) -> None:
    """Bug caught: batches not cut at batch_size (one batch per message, or everything in one),
    a partial batch published before its interval, or flush() not publishing it."""
    rest = rest % size
    count = size * full + rest
    async with bench(prism_env, kind) as b:
        async with b.producer(batch_size=size, batch_interval=NEVER) as producer:
            futures = [await producer.send(f"m{i}".encode()) for i in range(count)]
            await settled(futures[: size * full])
            assert producer.metrics.batches_published == full
            assert producer.metrics.published == size * full
            assert [f.done() for f in futures[size * full :]] == [False] * rest, "a partial batch went out early"
            assert producer.pending == rest
            await producer.flush()
            assert all(f.done() for f in futures)
            assert producer.metrics.batches_published == full + (1 if rest else 0)
        got = await b.delivered()
        assert [bytes(m.payload) for m in got] == [f"m{i}".encode() for i in range(count)]


@kinds
async def test_batches_by_interval_without_flush(prism_env: PrismEnv, kind: Kind) -> None:
    """A batch that is not full is published once batch_interval passed since its first message,
    in one batch. Bug caught: the interval ignored (a partial batch never goes out, or each
    message goes out at once), or the interval counted from the wrong message."""
    interval = 0.2
    async with bench(prism_env, kind) as b:
        async with b.producer(batch_size=1000, batch_interval=interval) as producer:
            loop = asyncio.get_running_loop()
            began = loop.time()
            futures = [await producer.send(f"i{i}".encode()) for i in range(3)]
            await settled(futures)
            waited = loop.time() - began
            assert producer.metrics.batches_published == 1
            assert producer.metrics.published == 3
            assert waited >= interval * 0.9, f"the batch went out after {waited:.3f}s, before its {interval}s"
            assert producer.metrics.publish_latency_max_seconds >= interval * 0.9
            second = [await producer.send(b"later")]
            await settled(second)
            assert producer.metrics.batches_published == 2
        got = await b.delivered()
        assert [bytes(m.payload) for m in got] == [b"i0", b"i1", b"i2", b"later"]


@kinds
async def test_the_interval_runs_from_a_batchs_first_message_not_its_last(prism_env: PrismEnv, kind: Kind) -> None:
    """Messages that keep arriving faster than batch_interval do not hold a batch back: the
    first batch goes out batch_interval after its first message while later ones still come.
    Bug caught: the interval counted from the batch's newest message (a steady trickle is
    never published until it stops). No wall-clock bound: the sends span five intervals of
    sleeps at least, so a batch due after one has been published before the last send."""
    interval = 0.2
    async with bench(prism_env, kind) as b:
        async with b.producer(batch_size=1000, batch_interval=interval) as producer:
            first = await producer.send(b"t0")
            futures = [first]
            for i in range(1, 21):  # one every quarter interval: always a message younger than it
                await asyncio.sleep(interval / 4)
                futures.append(await producer.send(f"t{i}".encode()))
            published_before_the_last_send = first.done()
            await settled(futures)
            assert published_before_the_last_send, (
                f"the first message, due {interval}s after it came, was still unpublished after 20 more "
                f"sends spanning {20 * interval / 4:.1f}s: the interval restarts with each new message"
            )
            assert producer.metrics.batches_published >= 2
        got = await b.delivered()
        assert [bytes(m.payload) for m in got] == [f"t{i}".encode() for i in range(21)]


class _OneCallPerBatch:
    """A batch sink over the bench's queue, log or topic, as an outbox writes a batch in one
    transaction: each call sends its messages, in order, to the one destination it names."""

    def __init__(self, b: Bench) -> None:
        self.b = b
        self.calls: list[tuple[str, list[bytes]]] = []

    async def publish_batch(self, destination: str, messages: Sequence[Message]) -> None:
        self.calls.append((destination, [bytes(m.payload) for m in messages]))
        for message in messages:
            if self.b.kind == "queue":
                await self.b.driver.queue().send(destination, message)
            elif self.b.kind == "log":
                await self.b.driver.log().append(destination, message)
            else:
                await self.b.driver.pubsub().publish(destination, message)


@kinds
async def test_a_batch_goes_to_one_destination_and_a_message_to_another_begins_the_next(
    prism_env: PrismEnv, kind: Kind
) -> None:
    """Messages to two destinations handed over within one batch's time, interleaved: the batch
    sink (one destination per call, as an outbox transaction) gets them cut at each change of
    destination, each part to its own destination, in the order handed over. Bug caught: a
    batch sent whole to its first message's destination (every other message lands at the
    wrong destination, reported published)."""
    async with bench(prism_env, kind) as b:
        other = b.ns.name("other")
        other_reader = SinkReader(lambda: b.driver, kind, other, prism_env.spec("sink").properties.ordering)
        await other_reader.open()
        try:
            sink = _OneCallPerBatch(b)
            config = ProducerConfig(destination=b.destination, batch_size=10, batch_interval=NEVER)
            handed = [(b.destination, b"a0"), (b.destination, b"a1"), (other, b"o0"), (b.destination, b"a2")]
            handed.append((other, b"o1"))
            async with Producer(sink, config, clock=b.clock, sleep=b.sleeps) as producer:
                futures = [await producer.send(payload, destination=to) for to, payload in handed]
                await producer.flush()
            outcomes = [f.result() for f in futures]
            got = {b.destination: await b.delivered(), other: await other_reader.until_now(_deadline())}
        finally:
            await other_reader.close()
        assert [o.destination for o in outcomes] == [to for to, _ in handed]
        assert all(o.published for o in outcomes)
        want = {to: [p for dest, p in handed if dest == to] for to in (b.destination, other)}
        assert {to: [bytes(m.payload) for m in messages] for to, messages in got.items()} == want, (
            f"messages landed at another destination than their own: the batch sink was called {sink.calls}"
        )
        assert sink.calls == [
            (b.destination, [b"a0", b"a1"]),
            (other, [b"o0"]),
            (b.destination, [b"a2"]),
            (other, [b"o1"]),
        ]
        assert producer.metrics.batches_published == 4


# --- retries -------------------------------------------------------------------------------


@kinds
@given(failures=st.integers(1, 3), position=st.integers(0, 3))
@prism_settings
async def test_publish_retries_with_exponential_backoff(
    prism_env: PrismEnv, kind: Kind, failures: int, position: int
) -> None:
    """A send refused ``failures`` times (within max_retries) is published once on the next
    attempt, with its attempt number visible, after waits doubling from retry_backoff up to its
    cap. Bug caught: no retry, a retry that resends the batch's earlier messages, a fixed or
    unbounded backoff, attempts not counted."""
    async with bench(prism_env, kind) as b:
        payloads = [f"r{i}".encode() for i in range(4)]
        b.faulty.plan[payloads[position]] = ["before"] * failures
        async with b.producer(batch_size=4, batch_interval=NEVER, max_retries=3) as producer:
            futures = [await producer.send(p) for p in payloads]
            await settled(futures)
        outcomes = [f.result() for f in futures]
        own = [b.faulty.own_failures(p) for p in payloads]  # a loaded backend's: retried as any failure
        injected = [failures if i == position else 0 for i in range(4)]
        assert [o.attempts for o in outcomes] == [1 + injected[i] + own[i] for i in range(4)]
        got = await b.delivered()
        assert arrived_once_each(got, payloads, own, b.dedup_sink) == payloads  # in order
        if not own[position]:
            (stored,) = [m for m in got if bytes(m.payload) == payloads[position]]
            assert stored.headers[HEADER_ATTEMPT] == str(failures + 1)
        assert b.faulty.retries_of(payloads[position]) == [str(n) for n in range(1, outcomes[position].attempts + 1)]
        assert producer.metrics.retries == failures + sum(own)
        assert b.sleeps.asked == [min(0.01 * 2**n, 0.04) for n in range(failures)]
        assert (producer.metrics.published, producer.metrics.failed, producer.metrics.batches_published) == (4, 0, 1)


@kinds
async def test_retries_run_out_and_nothing_is_published_past_the_failure(prism_env: PrismEnv, kind: Kind) -> None:
    """A message refused more than max_retries times fails with PublishFailed; the messages of
    its batch after it are not sent (order holds), those before it stay published once. Bug
    caught: a failure reported as success, an unbounded retry, a later message overtaking the
    failed one, the batch's earlier messages resent."""
    async with bench(prism_env, kind) as b:
        b.faulty.plan[b"f1"] = ["before"] * 3
        async with b.producer(batch_size=3, batch_interval=NEVER, max_retries=2) as producer:
            futures = [await producer.send(p) for p in (b"f0", b"f1", b"f2")]
            await settled(futures)
            health = await producer.health()
        assert futures[0].result().published
        with pytest.raises(PublishFailed) as failed:
            futures[1].result()
        assert failed.value.attempts == 3
        with pytest.raises(PublishFailed):
            futures[2].result()
        assert b.faulty.retries_of(b"f1") == ["1", "2", "3"]
        assert b.faulty.retries_of(b"f2") == [], "a message after the failed one was sent"
        own = b.faulty.own_failures(b"f0")  # a loaded backend's: retried as any failure
        assert arrived_once_each(await b.delivered(), [b"f0"], [own], b.dedup_sink) == [b"f0"]
        m = producer.metrics
        assert (m.published, m.failed, m.retries, m.pending, m.batches_published) == (1, 2, 2 + own, 0, 1)
        assert health.status is HealthStatus.DEGRADED


@kinds
async def test_a_refused_payload_is_not_retried(prism_env: PrismEnv, kind: Kind) -> None:
    """An error no retry can fix (the sink does not support the operation) fails at once.
    Bug caught: retrying what can never succeed (max_retries wasted sends and waits)."""
    async with bench(prism_env, kind) as b:

        class Refusing:
            def __init__(self, inner: object) -> None:
                self.inner = inner

            def __getattr__(self, name: str) -> object:
                return getattr(self.inner, name)

        sink = b.faulty.sink
        method = {"queue": "send", "log": "append", "pubsub": "publish"}[kind]

        async def refuse(*args: object, **kwargs: object) -> None:
            b.sleeps.asked.append(-1.0)
            raise NotSupported(b.driver.name, "injected")

        setattr(sink, method, refuse)
        producer = Producer(sink, ProducerConfig(destination=b.destination, max_retries=5), sleep=b.sleeps)
        async with producer:
            with pytest.raises(PublishFailed) as failed:
                await producer.publish(b"x")
        assert failed.value.attempts == 1
        assert b.sleeps.asked == [-1.0]
        assert producer.metrics.retries == 0


@kinds
@given(faulted=st.sets(st.integers(0, 5), min_size=1, max_size=3))
@prism_settings
async def test_a_sink_failing_mid_batch_loses_nothing_and_duplicates_only_lost_answers(
    prism_env: PrismEnv, kind: Kind, faulted: set[int]
) -> None:
    """The sink fails in the middle of a batch: some sends are refused (nothing stored), some
    are stored with their answer lost (the producer cannot know). Every message arrives; a
    refused send arrives once; a lost answer's retry arrives again with the same message id
    and attempt 2 (each retry visible), unless the queue drops resends by id (``queue.dedup``).
    Bug caught: retrying the whole batch (earlier messages duplicated), a new id per retry
    (duplicates that cannot be recognised), a message lost after a failure."""
    async with bench(prism_env, kind) as b:
        payloads = [f"b{i}".encode() for i in range(6)]
        lost_answer = {i for i in faulted if i % 2 == 0}
        for i in faulted:
            b.faulty.plan[payloads[i]] = ["after" if i in lost_answer else "before"]
        async with b.producer(batch_size=6, batch_interval=NEVER, max_retries=2) as producer:
            futures = [await producer.send(p) for p in payloads]
            await settled(futures)
        outcomes = [f.result() for f in futures]
        got = await b.delivered()
        ids = {o.message_id: i for i, o in enumerate(outcomes)}
        expected: list[tuple[int, str]] = []
        for i in range(6):
            if i in lost_answer:
                expected.append((i, "1"))
                if not b.dedup_sink:
                    expected.append((i, "2"))
            elif i in faulted:
                expected.append((i, "2"))
            else:
                expected.append((i, "1"))
        seen = [(ids[m.headers[MESSAGE_ID_HEADER]], m.headers[HEADER_ATTEMPT]) for m in got]
        # A send the backend failed by itself (a loaded machine's) is one more retry, and its
        # copy may or may not be stored: that message's copies are checked apart, by attempt.
        own = [b.faulty.own_failures(p) for p in payloads]
        assert [c for c in seen if not own[c[0]]] == [c for c in expected if not own[c[0]]]
        for i in (i for i in range(6) if own[i]):
            copies = [attempt for j, attempt in seen if j == i]
            assert copies, f"message {i} lost"
            assert set(copies) <= {str(n) for n in range(1, outcomes[i].attempts + 1)}
        assert producer.metrics.retries == len(faulted) + sum(own)
        assert producer.metrics.published == 6
        assert [o.attempts for o in outcomes] == [(2 if i in faulted else 1) + own[i] for i in range(6)]


# --- deduplication -------------------------------------------------------------------------


@kinds
@given(picks=st.lists(st.integers(0, 4), min_size=1, max_size=12))
@prism_settings
async def test_duplicates_within_the_window_are_published_once(
    prism_env: PrismEnv, kind: Kind, picks: list[int]
) -> None:
    """Content published again inside the window is not published again, and its outcome names
    the first publish's id. Bug caught: no deduplication, dedup of distinct content, a duplicate
    counted as published."""
    async with bench(prism_env, kind) as b:
        async with b.producer(deduplication=True) as producer:
            outcomes = []
            for p in picks:
                b.clock.advance(1.0)
                outcomes.append(await producer.publish(f"d{p}".encode()))
        first: dict[int, str] = {}
        for p, o in zip(picks, outcomes, strict=True):
            if p in first:
                assert o.status is PublishStatus.DEDUPLICATED
                assert o.message_id == first[p]
            else:
                assert o.status is PublishStatus.PUBLISHED
                first[p] = o.message_id
        unique = list(dict.fromkeys(picks))
        assert [bytes(m.payload) for m in await b.delivered()] == [f"d{p}".encode() for p in unique]
        assert producer.metrics.deduplicated == len(picks) - len(unique)
        assert producer.metrics.published == len(unique)


@kinds
async def test_dedup_window_expires(prism_env: PrismEnv, kind: Kind) -> None:
    """Content is a duplicate until dedup_window seconds after its publish, and new after.
    The default window is 5 minutes. Bug caught: a window that never ends, one measured from the
    last duplicate, or in the wrong unit."""
    assert ProducerConfig().dedup_window == 300.0
    assert ProducerConfig.model_validate({"dedup_window": "2m"}).dedup_window == 120.0
    async with bench(prism_env, kind) as b:
        async with b.producer(deduplication=True, dedup_window=60) as producer:
            assert (await producer.publish(b"w")).published
            b.clock.advance(59.0)
            assert (await producer.publish(b"w")).status is PublishStatus.DEDUPLICATED
            b.clock.advance(1.5)  # 60.5 s after the publish, 1.5 s after the duplicate
            assert (await producer.publish(b"w")).published
            b.clock.advance(30.0)
            assert (await producer.publish(b"w")).status is PublishStatus.DEDUPLICATED
            assert (await producer.publish(b"edge")).published
            b.clock.advance(60.0)  # exactly the window: "within" is strictly less
            assert (await producer.publish(b"edge")).published
        assert [bytes(m.payload) for m in await b.delivered()] == [b"w", b"w", b"edge", b"edge"]
        assert (producer.metrics.published, producer.metrics.deduplicated) == (4, 2)


@kinds
async def test_content_means_destination_key_payload_and_headers(prism_env: PrismEnv, kind: Kind) -> None:
    """Messages that differ only in key, in a header, or in destination are not duplicates.
    Bug caught: a digest of the payload alone (distinct messages silently dropped)."""
    async with bench(prism_env, kind) as b:
        other = b.ns.name("other")
        async with b.producer(deduplication=True) as producer:
            variants = [Message(b"p"), Message(b"p", key="k"), Message(b"p", {"h": "1"}), Message(b"p", {"h": "2"})]
            assert all([(await producer.publish(m)).published for m in variants])
            assert (await producer.publish(Message(b"p"), destination=other)).published
            assert (await producer.publish(Message(b"p", {"h": "1"}))).status is PublishStatus.DEDUPLICATED
        assert [user_view(m) for m in await b.delivered()] == [user_view(m) for m in variants]
        assert content_digest(b.destination, Message(b"p")) != content_digest(other, Message(b"p"))


@kinds
async def test_a_restarted_producer_keeps_deduplicating(prism_env: PrismEnv, kind: Kind) -> None:
    """The marks live in the state slot: a new producer over the same state (a restart, or a
    second instance) deduplicates what the first published. Bug caught: marks kept in memory."""
    async with bench(prism_env, kind) as b:
        async with b.producer(deduplication=True) as first:
            published = await first.publish(b"again")
        assert first.state is LifecycleState.STOPPED
        async with b.producer(deduplication=True) as second:
            outcome = await second.publish(b"again")
        assert outcome.status is PublishStatus.DEDUPLICATED
        assert outcome.message_id == published.message_id
        assert [bytes(m.payload) for m in await b.delivered()] == [b"again"]


@kinds
async def test_dedup_state_lost_mid_window_publishes_again(prism_env: PrismEnv, kind: Kind) -> None:
    """Marks lost from the state (deleted, or expired early behind the producer's back) mean
    "not seen": the content is published again, exactly once more, and deduplicated after.
    Bug caught: a producer trusting a memory of its own over the state, or failing on it."""
    async with bench(prism_env, kind) as b:
        async with b.producer(deduplication=True) as producer:
            assert (await producer.publish(b"s")).published
            key = producer.config.state_prefix + content_digest(b.destination, Message(b"s"))
            assert await b.state.inner.get(key) is not None, "the mark is not in the state slot"
            assert await b.state.inner.delete(key)
            b.clock.advance(10.0)
            again = await producer.publish(b"s")
            third = await producer.publish(b"s")
        assert again.published
        assert third.status is PublishStatus.DEDUPLICATED
        assert third.message_id == again.message_id
        assert [bytes(m.payload) for m in await b.delivered()] == [b"s", b"s"]


@kinds
async def test_unreadable_dedup_state_publishes_and_counts(prism_env: PrismEnv, kind: Kind) -> None:
    """With the state unreachable the producer publishes (at-least-once over dedup) and counts
    state_errors. Bug caught: a message lost (or the producer stuck) because dedup failed."""
    async with bench(prism_env, kind) as b:
        async with b.producer(deduplication=True) as producer:
            assert (await producer.publish(b"u")).published
            b.state.unreadable = True
            assert (await producer.publish(b"u")).published
            b.state.unreadable = False
            assert (await producer.publish(b"u")).status is PublishStatus.DEDUPLICATED
        assert producer.metrics.state_errors == 1
        assert [bytes(m.payload) for m in await b.delivered()] == [b"u", b"u"]


@kinds
async def test_a_failed_publish_is_not_deduplicated_later(prism_env: PrismEnv, kind: Kind) -> None:
    """The mark is written only after the sink accepted the message: content whose publish
    failed is published when handed over again. Bug caught: the mark written before the send
    (the application's retry is dropped as a duplicate: the message is lost)."""
    async with bench(prism_env, kind) as b:
        b.faulty.plan[b"once"] = ["before", "before"]
        async with b.producer(deduplication=True, max_retries=1) as producer:
            with pytest.raises(PublishFailed):
                await producer.publish(b"once")
            assert (await producer.publish(b"once")).published
        assert [bytes(m.payload) for m in await b.delivered()] == [b"once"]
        assert (producer.metrics.failed, producer.metrics.published, producer.metrics.deduplicated) == (1, 1, 0)


@kinds
async def test_identical_content_handed_over_concurrently_is_published_once(prism_env: PrismEnv, kind: Kind) -> None:
    """Bug caught: two identical messages both pass the state check before either mark exists."""
    async with bench(prism_env, kind) as b:
        async with b.producer(deduplication=True) as producer:
            outcomes = await asyncio.wait_for(
                asyncio.gather(*(producer.publish(b"c") for _ in range(4))), patience.bound("calm-op")
            )
        statuses = sorted(o.status for o in outcomes)
        assert statuses == [PublishStatus.DEDUPLICATED] * 3 + [PublishStatus.PUBLISHED]
        assert [bytes(m.payload) for m in await b.delivered()] == [b"c"]


# --- metrics and health --------------------------------------------------------------------


@kinds
async def test_metrics_are_exact(prism_env: PrismEnv, kind: Kind) -> None:
    """Every counter after a scripted run: published, failed, deduplicated, bytes, batches,
    retries, pending, and publish latency consistent with what was measured around it.
    Bug caught: a counter bumped per attempt instead of per message, bytes of duplicates or
    failures counted, latency not measured."""
    async with bench(prism_env, kind) as b:
        b.faulty.plan[b"retry-me"] = ["before"]
        b.faulty.plan[b"doomed"] = ["before", "before"]
        loop = asyncio.get_running_loop()
        began = loop.time()
        async with b.producer(deduplication=True, batch_size=2, batch_interval=NEVER, max_retries=1) as producer:
            futures = [await producer.send(p) for p in (b"aaaa", b"retry-me")]  # batch 1
            futures.append(await producer.send(b"aaaa"))  # a duplicate of an unsettled twin
            futures += [await producer.send(p) for p in (b"doomed", b"after")]  # batch 2: fails at doomed
            await settled(futures)
            futures.append(await producer.send(b"z"))
            await producer.flush()  # batch 3
            health = await producer.health()
        elapsed = loop.time() - began
        m = producer.metrics
        assert m.published == 3  # aaaa, retry-me, z
        assert m.failed == 2  # doomed, and after (not sent past it)
        assert m.deduplicated == 1
        assert m.bytes_published == len(b"aaaa") + len(b"retry-me") + len(b"z")
        assert m.batches_published == 2
        assert m.retries == 2  # retry-me once, doomed once
        assert m.pending == 0
        assert 0 <= m.publish_latency_last_seconds <= m.publish_latency_max_seconds <= elapsed
        assert m.publish_latency_max_seconds <= m.publish_latency_sum_seconds <= 3 * elapsed
        assert health.status is HealthStatus.HEALTHY  # the last publish succeeded
        assert health.metrics["published"] == 3
        assert health.metrics["failed"] == 2


# --- lifecycle -----------------------------------------------------------------------------


@kinds
async def test_lifecycle_misuse_raises_typed_errors(prism_env: PrismEnv, kind: Kind) -> None:
    """Bug caught: a publish accepted before start (it would never be flushed) or after stop
    (lost), a second start running two flush loops, a second stop."""
    async with bench(prism_env, kind) as b:
        producer = b.producer()
        assert (await producer.health()).status is HealthStatus.UNHEALTHY
        with pytest.raises(NotStarted):
            await producer.publish(b"early")
        with pytest.raises(NotStarted):
            await producer.stop()
        await producer.start()
        with pytest.raises(AlreadyStarted):
            await producer.start()
        assert (await producer.health()).healthy
        await producer.stop()
        with pytest.raises(PatternStopped):
            await producer.publish(b"late")
        with pytest.raises(AlreadyStopped):
            await producer.stop()
        with pytest.raises(AlreadyStopped):
            await producer.start()
        assert (await producer.health()).status is HealthStatus.UNHEALTHY
        assert await b.delivered() == []


async def test_configuration_is_checked_before_anything_runs(prism_env: PrismEnv) -> None:
    """Bug caught: deduplication accepted without a state to keep marks in (it would silently
    not deduplicate), a sink of the wrong interface accepted (failing at the first publish)."""
    state: KeyValue = prism_env.driver("state").keyvalue()
    sink_driver = prism_env.driver("sink")
    kind = next(k for k in KINDS if sink_driver.supports(Capability(k)))
    sink = getattr(sink_driver, kind)()
    with pytest.raises(ProducerConfigurationError, match="state"):
        Producer(sink, ProducerConfig(deduplication=True))
    with pytest.raises(SlotMismatch, match="slot 'sink'"):
        Producer(state, ProducerConfig())
    with pytest.raises(SlotMismatch, match="slot 'state'"):
        Producer(sink, ProducerConfig(), state=sink)
    config = ProducerConfig.model_validate({"batch_interval": "250ms", "retry_backoff": "10ms", "dedup_window": "5m"})
    assert (config.batch_interval, config.retry_backoff, config.dedup_window) == (0.25, 0.01, 300.0)
    with pytest.raises(ValueError):
        ProducerConfig(batch_size=0)


@kinds
async def test_graceful_stop_flushes_everything_within_its_bound(prism_env: PrismEnv, kind: Kind) -> None:
    """stop() publishes every queued message at once, without waiting for the batch interval,
    and reports a clean stop. Bug caught: a stop that drops the partial batch, or one that waits
    for the interval (an hour here) and is forced."""
    async with bench(prism_env, kind) as b:
        producer = b.producer(batch_size=100, batch_interval=NEVER)
        await producer.start()
        futures = [await producer.send(f"g{i}".encode()) for i in range(7)]
        report = await producer.stop(within=patience.bound("calm-op"))
        assert report.drained
        assert not report.forced
        assert report.clean
        assert report.exit_code == 0
        assert all(f.done() and f.result().published for f in futures)
        assert [bytes(m.payload) for m in await b.delivered()] == [f"g{i}".encode() for i in range(7)]
        assert producer.metrics.batches_published == 1


@kinds
async def test_forced_stop_after_the_bound_reports_what_it_left(prism_env: PrismEnv, kind: Kind) -> None:
    """A send that hangs holds the drain past its bound: the stop returns soon after the bound,
    forced, naming every message it gave up (the hung one as maybe published), and their
    publishes fail with PublishAbandoned. Bug caught: a stop that hangs with its sink, one that
    returns early without forcing, abandoned messages reported as published or not at all."""
    async with bench(prism_env, kind) as b:
        b.faulty.plan[b"h1"] = ["hang"]
        producer = b.producer(batch_size=100, batch_interval=NEVER)
        await producer.start()
        futures = [await producer.send(p) for p in (b"h0", b"h1", b"h2")]
        flushing = asyncio.ensure_future(producer.flush())
        # the stop begins once h1's send hangs, so the bound runs out with it under way
        await asyncio.wait_for(b.faulty.held.wait(), patience.bound("calm-op"))
        bound = 0.3
        loop = asyncio.get_running_loop()
        began = loop.time()
        report = await asyncio.wait_for(producer.stop(within=bound), patience.bound("calm-op"))
        elapsed = loop.time() - began
        b.faulty.release.set()
        await asyncio.wait_for(flushing, patience.bound("calm-op"))  # ends with its messages settled
        assert report.forced
        assert not report.drained
        assert report.exit_code == 2
        assert elapsed >= bound * 0.9
        ids = [f.result().message_id if not f.exception() else "" for f in futures[:1]]
        assert ids[0]
        assert len(report.left) == 2
        assert "may have been published" in report.left[0]
        with pytest.raises(PublishAbandoned) as hung:
            futures[1].result()
        assert hung.value.maybe_published
        with pytest.raises(PublishAbandoned) as unsent:
            futures[2].result()
        assert not unsent.value.maybe_published
        assert producer.metrics.failed == 2
        assert producer.state is LifecycleState.STOPPED
        assert b.faulty.retries_of(b"h2") == [], "a message after the hung one was sent"


# --- a sink server killed with a batch in flight ---------------------------------------------


class _Reconnecting:
    """The sink slot's queue or log as a producer sees it across a server restart: every call
    goes through the slot's current driver, and the ``kill_after``-th accepted send is followed
    by a SIGKILL and restart of the server before the call returns."""

    def __init__(self, prism_env: PrismEnv, kind: Kind, kill_after: int) -> None:
        self.env, self.kind, self.kill_after = prism_env, kind, kill_after
        self.accepted = 0
        self.restarted = False
        self.errors: list[str] = []

    async def _sent(self) -> None:
        self.accepted += 1
        if self.accepted == self.kill_after:
            old = self.env.driver("sink")
            await self.env.restart("sink", kill=True)
            self.env.faults["kill"] += 1
            self.restarted = self.env.driver("sink") is not old

    async def _guard(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except Exception as exc:
            self.errors.append(type(exc).__name__)
            raise


class _ReconnectingQueue(_Reconnecting):
    async def send(self, queue: str, message: Message) -> str:
        sent = await self._guard(self.env.driver("sink").queue().send(queue, message))
        await self._sent()
        return sent

    async def receive(self, queue: str, *, wait: float = 0.0, visibility_timeout: float = 30.0) -> QueueDelivery | None:
        return await self.env.driver("sink").queue().receive(queue, wait=wait, visibility_timeout=visibility_timeout)

    async def ack(self, queue: str, delivery: QueueDelivery) -> None:
        await self.env.driver("sink").queue().ack(queue, delivery)

    async def nack(self, queue: str, delivery: QueueDelivery) -> None:
        await self.env.driver("sink").queue().nack(queue, delivery)


class _ReconnectingLog(_Reconnecting):
    async def append(self, log: str, message: Message) -> int:
        offset = await self._guard(self.env.driver("sink").log().append(log, message))
        await self._sent()
        return offset

    async def read(self, log: str, offset: int, *, limit: int = 100, wait: float = 0.0) -> list[Record]:
        return await self.env.driver("sink").log().read(log, offset, limit=limit, wait=wait)

    async def end_offset(self, log: str) -> int:
        return await self.env.driver("sink").log().end_offset(log)

    async def commit(self, log: str, group: str, offset: int) -> None:
        await self.env.driver("sink").log().commit(log, group, offset)

    async def committed(self, log: str, group: str) -> int | None:
        return await self.env.driver("sink").log().committed(log, group)


@pytest.mark.parametrize("kind", ["queue", "log"])
async def test_a_sink_server_killed_with_a_batch_in_flight(prism_env: PrismEnv, kind: Kind) -> None:
    """The sink's server is SIGKILLed and restarted after accepting part of a batch; the producer
    goes on with the rest on the restarted server. Every message sent after the kill arrives once,
    in order; what was accepted before it survives if the instance is declared durable (else it
    may be lost: the sink's delivery model, not the producer's), and nothing arrives twice. Bug
    caught: a producer that resends what the sink accepted, gives up the batch at the restart, or
    loses the rest of the batch. (Pub/sub is left out: a restart drops its subscribers.)"""
    if prism_env.control("sink") is None:
        pytest.skip(f"{prism_env.combination['sink']}: no process to kill (embedded, or given by URL)")
    if not prism_env.driver("sink").supports(Capability(kind)):
        pytest.skip(f"{prism_env.combination['sink']} does not provide {kind}")
    durable = prism_env.spec("sink").properties.durable
    async with prism_env.example() as ns:
        destination = ns.name("killed")
        kill_after = 4
        sink = (
            _ReconnectingQueue(prism_env, kind, kill_after)
            if kind == "queue"
            else _ReconnectingLog(prism_env, kind, kill_after)
        )
        producer = Producer(
            sink,
            ProducerConfig(
                destination=destination,
                batch_size=10,
                batch_interval=patience.handed("outlive-run"),
                # the retries must outlast a server restart on this machine: a retry budget
                max_retries=20,
                retry_backoff=patience.handed("poll") * 2.5,
                retry_backoff_max=patience.handed("poll") * 25,
            ),
        )
        async with producer:
            futures = [await producer.send(f"k{i}".encode()) for i in range(10)]
            await producer.flush()
        outcomes = [f.result() for f in futures]  # every publish completed: none failed
        assert sink.restarted, "the sink's server was not restarted under the batch"
        assert all(o.published for o in outcomes)
        reader = SinkReader(
            lambda: prism_env.driver("sink"), kind, destination, prism_env.spec("sink").properties.ordering
        )
        got = [bytes(m.payload) for m in await reader.until_now(_deadline())]
        after = [f"k{i}".encode() for i in range(kill_after, 10)]
        before = [f"k{i}".encode() for i in range(kill_after)]
        assert len(got) == len(set(got)), f"duplicates after the kill: {got}"
        assert len(got) >= len(after), f"messages sent after the kill are missing: {got}"
        assert got[len(got) - len(after) :] == after, f"the messages sent after the kill: {got}"
        if durable:
            assert got == before + after, f"acknowledged before the kill and lost by a durable sink: {got}"
        else:
            assert set(got[: len(got) - len(after)]) <= set(before)
