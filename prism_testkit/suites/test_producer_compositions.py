"""The producer and consumer composed with other patterns (issue #40): a producer above the claim
check with a consumer below it (large payloads go to the object store, the application sees
them whole, and deduplication happens before anything is claimed), and a producer whose sink is
an outbox (each batch one transaction: all of it or none, a retried commit lands once), relayed
on to a consumer.

Runs over (messaging x objects x store) combinations; every claim-check test once per messaging
interface the backend provides.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from prism_testkit import Capability, Message, PrismEnv, Slot, patience, prism_suite
from prism_testkit.errors import TransactionAborted
from prism_testkit.interfaces import Transaction, Transactions
from prism_testkit.patterns.claim_check import (
    ClaimCheck,
    ClaimCheckConfig,
    ClaimCheckLog,
    ClaimCheckPubSub,
    ClaimCheckQueue,
)
from prism_testkit.patterns.consumer import Consumer, ConsumerConfig
from prism_testkit.patterns.outbox import HEADER_AGGREGATE_ID, Outbox, OutboxConfig, OutboxRelay, QueueSink
from prism_testkit.patterns.producer import (
    OutboxSink,
    Producer,
    ProducerConfig,
    PublishFailed,
    PublishStatus,
)

from ._helpers import collect, read_all
from ._producer_faults import Kind, Sleeps

pytestmark = prism_suite(
    "producer_compositions",
    messaging=Slot.one_of("queue", "log", "pubsub"),
    objects=Slot.needs("objects"),
    store=Slot.needs("transactions", "keyvalue.cas", "log"),
)

THRESHOLD = 64


class Handler:
    def __init__(self) -> None:
        self.got: list[Message] = []
        self.changed = asyncio.Event()

    async def __call__(self, message: Message) -> None:
        self.got.append(message)
        self.changed.set()

    async def until(self, count: int) -> None:
        async def wait() -> None:
            while len(self.got) < count:
                self.changed.clear()
                await self.changed.wait()

        try:
            await asyncio.wait_for(wait(), patience.bound("stall"))
        except TimeoutError:
            raise AssertionError(f"waited for {count} messages, handled {len(self.got)}") from None


@asynccontextmanager
async def claim_check(prism_env: PrismEnv, kind: Kind) -> AsyncIterator[ClaimCheck]:
    async with prism_env.example() as ns:
        cc = ClaimCheck(
            prism_env.driver("objects").objects(),
            ClaimCheckConfig(
                threshold=THRESHOLD, bucket=ns.name("claims"), on_consume="delete" if kind == "queue" else "keep"
            ),
        )
        await cc.ensure_bucket()
        yield cc


@pytest.mark.parametrize("kind", ["queue", "log", "pubsub"])
async def test_a_producer_above_the_claim_check_and_a_consumer_below_it(prism_env: PrismEnv, kind: Kind) -> None:
    """Large payloads travel as claims and reach the application whole, in order; a duplicate
    large payload is dropped by the producer before it is claimed (no second object). Bug
    caught: dedup over the claimed message (the claim key differs every time, so nothing is a
    duplicate), an object written for a duplicate, a consumer handed the claim instead of the
    payload."""
    driver = prism_env.driver("messaging")
    if not driver.supports(Capability(kind)):
        pytest.skip(f"{driver.name} does not provide {kind}")
    async with claim_check(prism_env, kind) as cc:
        name = cc.config.bucket + "-flow"
        if kind == "queue":
            sink: object = ClaimCheckQueue(driver.queue(), cc)
            source: object = ClaimCheckQueue(driver.queue(), cc)
        elif kind == "log":
            sink, source = ClaimCheckLog(driver.log(), cc), ClaimCheckLog(driver.log(), cc)
        else:
            sink, source = ClaimCheckPubSub(driver.pubsub(), cc), ClaimCheckPubSub(driver.pubsub(), cc)
        kv = prism_env.driver("store").keyvalue()
        rng = random.Random(7)
        big = [rng.randbytes(THRESHOLD * 4 + i) for i in range(3)]
        payloads = [b"small-0", big[0], b"small-1", big[1], big[0], big[2]]
        handler = Handler()
        producer = Producer(
            sink,
            ProducerConfig(
                destination=name,
                batch_size=2,
                batch_interval=patience.handed("outlive-run"),
                deduplication=True,
                state_prefix=cc.config.bucket + "-dedup/",
            ),
            state=kv,
        )
        consumer = Consumer(
            source,
            kv,
            handler,
            ConsumerConfig(source=name, state_prefix=cc.config.bucket + "-c/", poll_wait=patience.handed("poll")),
        )
        async with consumer, producer:
            futures = [await producer.send(p) for p in payloads]
            await producer.flush()
            statuses = [f.result().status for f in futures]
            await handler.until(5)
        assert statuses[4] is PublishStatus.DEDUPLICATED
        assert [bytes(m.payload) for m in handler.got] == [p for i, p in enumerate(payloads) if i != 4]
        assert all(cc.config.field not in m.headers for m in handler.got), "the consumer was handed a claim"
        assert cc.metrics.claims_created == 3  # one object per distinct large payload
        keys = await collect(cc.objects.list_keys(cc.config.bucket))
        assert len(keys) == (0 if kind == "queue" else 3)  # delete-after-ack, or kept for replay


class AbortingTransactions:
    """The store's transactions, whose first ``aborts`` commits fail with TransactionAborted
    (nothing applied), as a conflicting writer would make them."""

    def __init__(self, inner: Transactions, aborts: int) -> None:
        self.inner, self.aborts = inner, aborts

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        class Abort(Exception):
            pass

        try:
            async with self.inner.transaction() as tx:
                yield tx
                if self.aborts > 0:
                    self.aborts -= 1
                    raise Abort
        except Abort:
            raise TransactionAborted("injected: a conflicting writer won") from None


async def test_a_producer_whose_sink_is_an_outbox(prism_env: PrismEnv) -> None:
    """Each batch is one outbox transaction: its events commit together, in order, with the
    producer's destination as their aggregate; a batch whose commit aborted is retried and lands
    once; a batch that keeps aborting fails whole and leaves nothing. The relay publishes them on
    to a queue, and a consumer hands them over. Bug caught: a batch committed message by message
    (a failure leaves half of it), a retried commit doubling the events."""
    store = prism_env.driver("store")
    async with prism_env.example() as ns:
        config = OutboxConfig(log=ns.name("outbox"))
        flaky = AbortingTransactions(store.transactions(), aborts=1)
        outbox = Outbox(flaky, config)
        producer = Producer(
            OutboxSink(outbox, event_type="OrderPlaced"),
            ProducerConfig(
                destination="order-1", batch_size=3, batch_interval=patience.handed("outlive-run"), max_retries=2
            ),
            sleep=Sleeps(),
        )
        async with producer:
            first = [await producer.send(f"e{i}".encode()) for i in range(3)]  # its commit aborts once
            await producer.flush()
            second = [await producer.send(f"e{i}".encode()) for i in range(3, 5)]
            await producer.flush()
            flaky.aborts = 10
            doomed = [await producer.send(b"never")]
            await producer.flush()
        assert [f.result().attempts for f in first] == [2, 2, 2]
        assert all(f.result().published for f in second)
        with pytest.raises(PublishFailed):
            doomed[0].result()
        records = await read_all(store.log(), config.log)
        assert [bytes(r.message.payload) for r in records] == [f"e{i}".encode() for i in range(5)]
        assert {r.message.headers[HEADER_AGGREGATE_ID] for r in records} == {"order-1"}
        assert outbox.metrics.transactions_committed == 2
        assert producer.metrics.batches_published == 2

        queue_driver = prism_env.driver("messaging")
        if not queue_driver.supports(Capability.QUEUE):
            return
        destination = ns.name("orders")
        relay = OutboxRelay(store.log(), store.keyvalue(), QueueSink(queue_driver.queue(), destination), config, "r")
        while await relay.run_once():
            pass
        await relay.release()
        handler = Handler()
        consumer = Consumer(
            queue_driver.queue(),
            store.keyvalue(),
            handler,
            ConsumerConfig(source=destination, state_prefix=ns.name("c/"), poll_wait=patience.handed("poll")),
        )
        async with consumer:
            await handler.until(5)
        assert [bytes(m.payload) for m in handler.got] == [f"e{i}".encode() for i in range(5)]
