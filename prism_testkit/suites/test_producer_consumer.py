"""The unified producer-to-consumer suite (the seeds' unified test; issue #40): a producer
publishes, a consumer receives, across every (messaging x state) combination and every
messaging interface the backend provides. The upstream floor: one message, many, metrics,
state persisted. Beyond it: the producer's retries after lost answers (duplicates with one id)
reach a consumer whose processed marks hand each message to the application once (queue and
pub/sub; a log consumer works by position, so it sees the predicted duplicates), and a consumer
restarted mid-stream resumes without a skip.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prism_testkit import Capability, Message, PrismEnv, Slot, patience, prism_suite
from prism_testkit.interfaces import MESSAGE_ID_HEADER
from prism_testkit.isolation import Namespace
from prism_testkit.patterns.consumer import Consumer, ConsumerConfig
from prism_testkit.patterns.producer import HEADER_ATTEMPT, Producer, ProducerConfig

from ._helpers import prism_settings
from ._producer_faults import FaultySink, Kind, Sleeps

pytestmark = prism_suite(
    "producer_consumer",
    messaging=Slot.one_of("queue", "log", "pubsub"),
    state=Slot.needs("keyvalue"),
)

KINDS: list[Kind] = ["queue", "log", "pubsub"]
kinds = pytest.mark.parametrize("kind", KINDS)


class Sink:
    """What the application's handler saw."""

    def __init__(self) -> None:
        self.got: list[Message] = []
        self.changed = asyncio.Event()

    async def __call__(self, message: Message) -> None:
        self.got.append(message)
        self.changed.set()

    @property
    def payloads(self) -> list[bytes]:
        return [bytes(m.payload) for m in self.got]

    async def until(self, count: int) -> None:
        async def wait() -> None:
            while len(self.got) < count:
                self.changed.clear()
                await self.changed.wait()

        try:
            await asyncio.wait_for(wait(), patience.bound("stall"))
        except TimeoutError:
            raise AssertionError(f"waited for {count} messages; the consumer handled {self.payloads}") from None


class Pipe:
    def __init__(self, prism_env: PrismEnv, kind: Kind, ns: Namespace) -> None:
        driver = prism_env.driver("messaging")
        if not driver.supports(Capability(kind)):
            pytest.skip(f"{driver.name} does not provide {kind}")
        self.kind, self.driver, self.ns = kind, driver, ns
        self.name = ns.name("pipe")
        self.kv = prism_env.driver("state").keyvalue()
        self.faulty = FaultySink(kind, driver)

    def producer(self, **config: object) -> Producer:
        base: dict[str, object] = {"destination": self.name, "state_prefix": self.ns.name("p/"), "retry_backoff": 0.0}
        return Producer(
            self.faulty.sink,
            ProducerConfig.model_validate({**base, **config}),
            state=self.kv,
            sleep=Sleeps(),
        )

    def consumer(self, handler: Sink, **config: object) -> Consumer:
        base: dict[str, object] = {
            "source": self.name,
            "name": "app",
            "state_prefix": self.ns.name("c/"),
            "poll_wait": patience.handed("poll"),
        }
        source = {"queue": self.driver.queue, "log": self.driver.log, "pubsub": self.driver.pubsub}[self.kind]()
        return Consumer(source, self.kv, handler, ConsumerConfig.model_validate({**base, **config}))


@asynccontextmanager
async def pipe(prism_env: PrismEnv, kind: Kind) -> AsyncIterator[Pipe]:
    async with prism_env.example() as ns:
        yield Pipe(prism_env, kind, ns)


@kinds
async def test_one_message_flows_with_its_payload_and_headers(prism_env: PrismEnv, kind: Kind) -> None:
    """Bug caught: payload, headers or key changed on the way, or the message never arriving."""
    async with pipe(prism_env, kind) as p:
        handler = Sink()
        async with p.consumer(handler) as consumer, p.producer() as producer:
            sent = Message(b"hello", {"trace": "t1"}, key="k")
            outcome = await producer.publish(sent)
            await handler.until(1)
        (got,) = handler.got
        assert (bytes(got.payload), got.key, got.headers["trace"]) == (b"hello", "k", "t1")
        assert got.headers[MESSAGE_ID_HEADER] == outcome.message_id
        assert (producer.metrics.published, consumer.metrics.processed) == (1, 1)


@kinds
@given(payloads=st.lists(st.binary(min_size=1, max_size=32), min_size=1, max_size=20), batch=st.integers(1, 6))
@prism_settings
async def test_many_messages_flow_in_order_with_matching_metrics(
    prism_env: PrismEnv, kind: Kind, payloads: list[bytes], batch: int
) -> None:
    """Bug caught: a batch lost or reordered between producer and consumer, metrics that
    disagree with what flowed (published vs processed, bytes)."""
    async with pipe(prism_env, kind) as p:
        handler = Sink()
        async with (
            p.consumer(handler) as consumer,
            p.producer(batch_size=batch, batch_interval=patience.handed("outlive-run")) as producer,
        ):
            futures = [await producer.send(x) for x in payloads]
            await producer.flush()
            assert all(f.result().published for f in futures)
            await handler.until(len(payloads))
        assert handler.payloads == payloads
        assert producer.metrics.published == consumer.metrics.processed == len(payloads)
        assert producer.metrics.bytes_published == sum(map(len, payloads))
        assert producer.metrics.batches_published == -(-len(payloads) // batch)


@kinds
async def test_consumer_state_is_persisted_and_a_restart_resumes_without_a_skip(
    prism_env: PrismEnv, kind: Kind
) -> None:
    """A consumer stopped mid-stream and a new one over the same state: together they handle
    every message, each once. Bug caught: a state that is not persisted (the restart replays or
    skips)."""
    if kind == "pubsub":
        pytest.skip("pub/sub keeps nothing for a consumer that is not subscribed")
    async with pipe(prism_env, kind) as p:
        first, second = Sink(), Sink()
        async with p.producer() as producer:
            async with p.consumer(first):
                for i in range(3):
                    await producer.publish(f"a{i}".encode())
                await first.until(3)
            for i in range(3, 6):
                await producer.publish(f"a{i}".encode())
            async with p.consumer(second):
                await second.until(3)
        assert first.payloads + second.payloads == [f"a{i}".encode() for i in range(6)]


@kinds
async def test_producer_retries_after_lost_answers_reach_the_application_once(prism_env: PrismEnv, kind: Kind) -> None:
    """The sink stores a message but its answer is lost, so the producer sends it again with the
    same id (attempt 2). A queue that drops resends by id delivers it once; otherwise the copy
    reaches the consumer, whose processed mark hands it to the application once (queue, pub/sub);
    a log consumer, working by position, hands over exactly the predicted duplicate. Bug caught:
    a new id per retry, marks not written or not checked, a message lost to the fault."""
    async with pipe(prism_env, kind) as p:
        p.faulty.plan[b"x1"] = ["after"]
        p.faulty.plan[b"x3"] = ["after"]
        handler = Sink()
        async with p.consumer(handler) as consumer, p.producer(max_retries=2) as producer:
            for i in range(5):
                await producer.publish(f"x{i}".encode())
            await producer.publish(b"end")
            expected = [b"x0", b"x1", b"x2", b"x3", b"x4", b"end"]
            if kind == "log":
                expected = [b"x0", b"x1", b"x1", b"x2", b"x3", b"x3", b"x4", b"end"]
            await handler.until(len(expected))
            skipped = consumer.metrics.duplicates_skipped
        assert handler.payloads == expected
        assert producer.metrics.retries == 2
        assert p.faulty.retries_of(b"x1") == ["1", "2"]
        copies_sent = kind != "queue" or not p.driver.supports(Capability.QUEUE_DEDUP)
        assert skipped == (2 if copies_sent and kind != "log" else 0)
        if kind == "log":
            assert [m.headers[HEADER_ATTEMPT] for m in handler.got if m.payload == b"x1"] == ["1", "2"]
