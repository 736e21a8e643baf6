"""Acceptance suite of the outbox published by the change feed (``publisher: {mode: cdc}``,
RFC-014 pattern 4), over every (change-feed store x sink) combination.

``store`` is a backend with a change feed (PostgreSQL logical decoding, the SQLite change table,
memstore's feed) holding the business rows and the outbox rows; ``sink`` is where the publisher
publishes, once per messaging interface it provides. The publisher must give the relay's
guarantees: every event of a committed transaction delivered at least once with a stable event
id, none of a rolled-back or aborted one, each aggregate in commit order with sequence 1, 2,
3...; with a publisher killed after the sink acknowledged but before it confirmed the feed's
position (restarted: duplicates with the same ids, nothing lost), with concurrent producers,
with transactions committing out of begin order, and with the store's server killed. Every test
ends by dropping the capture and finding no capture, slot or publication left behind.

The checks are the outbox suite's own (:func:`.test_outbox.check_delivered`).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, suppress
from typing import Any, Literal

import pytest
from hypothesis import given

from prism_testkit import Driver, Ordering, PrismEnv, Slot, patience, prism_suite
from prism_testkit.errors import ProvisioningError
from prism_testkit.interfaces import ChangeFeed
from prism_testkit.isolation import Namespace
from prism_testkit.patterns.outbox import (
    HEADER_EVENT_ID,
    Outbox,
    OutboxConfigurationError,
    OutboxPublisher,
    OutboxRelay,
    Sink,
)
from prism_testkit.patterns.outbox_cdc import OutboxCdcPublisher, RecordsBeforeCapture
from prism_testkit.runtime import PrismRuntime

from ._doubles import Killed
from ._helpers import prism_settings
from ._relay_faults import DyingChangeFeed
from ._sink_reader import Kind
from .test_outbox import (
    KINDS,
    SETTLE,
    TXS,
    Fault,
    OutboxHarness,
    Probe,
    Traffic,
    Tx,
    check_delivered,
    check_store,
    commit_all,
    mixed_events,
    overlap_patience,
    play,
    rigged,
    stored_records,
)

pytestmark = prism_suite(
    "outbox_cdc",
    store=Slot.needs("transactions", "keyvalue.cas", "keyvalue.scan", "changefeed"),
    sink=Slot.one_of("queue", "log", "pubsub"),
)

CAPTURED = ("capture:", "slot:", "publication:")
PRODUCERS = 3
TRANSACTIONS = 8  # per producer
STORES_USED: set[str] = set()  # backends this process ran the suite's stores on


def publisher(
    r: OutboxHarness, *, sink: Sink | None = None, store: Driver | None = None, fault: Fault | None = None
) -> OutboxCdcPublisher:
    """A publisher process over the store's change feed; with ``fault``, one that dies with it."""
    store = store or r.prism_env.driver("store")
    feed: ChangeFeed = store.changefeed() if fault is None else DyingChangeFeed(store.changefeed(), fault)
    return OutboxCdcPublisher(feed, sink or r.consumer.sink, r.config, kv=store.keyvalue())


@pytest.fixture(scope="module", autouse=True)
def no_capture_left_in_the_run(prism_runtime: PrismRuntime) -> Iterator[None]:
    """After this module's tests in this process: no capture, replication slot or publication
    left by any namespace of the run on the stores used (each test already checked its own)."""
    yield
    left = {}
    for name in sorted(STORES_USED):
        with suppress(ProvisioningError):  # a store whose restart failed: its tests said so
            found = prism_runtime.run(prism_runtime.driver(name).leftovers(prism_runtime.namespaces.prefix))
            left[name] = [x for x in found if x.startswith(CAPTURED)]
    assert not any(left.values()), f"captures left behind by the run: {left}"


@asynccontextmanager
async def cdc_rigged(prism_env: PrismEnv, ns: Namespace, kind: Kind, **config: Any) -> AsyncIterator[OutboxHarness]:
    """The outbox suite's rig in publisher mode cdc; when the block ends, the capture is dropped
    and must leave nothing behind (a PostgreSQL slot would retain WAL forever)."""
    STORES_USED.add(prism_env.combination["store"])
    settings = {
        "publisher": OutboxPublisher(mode="cdc", heartbeat_interval=patience.handed("poll") * 2.5),
        "batch_size": 3,
        **config,
    }
    async with rigged(prism_env, ns, kind, **settings) as r:
        yield r
        await publisher(r).drop()
        left = pub_captures(await prism_env.leftovers(ns))
        assert not left, f"the dropped capture left {left} behind"


async def started(r: OutboxHarness, **kwargs: Any) -> OutboxCdcPublisher:
    pub = publisher(r, **kwargs)
    await pub.start()
    return pub


# --- every committed event, nothing else -------------------------------------------------


@pytest.mark.parametrize("composite", ["plain", "claim-check"])
@pytest.mark.parametrize("kind", KINDS)
@prism_settings
@given(txs=TXS)
async def test_generated_transactions_are_published_exactly_by_the_change_feed(
    prism_env: PrismEnv, kind: Kind, composite: str, txs: list[Tx]
) -> None:
    async with prism_env.example() as ns, cdc_rigged(prism_env, ns, kind, claims=composite == "claim-check") as r:
        pub = await started(r)
        await play(r, txs, pub)  # overlapping transactions commit out of begin order
        await pub.drain()
        assert await pub.feed.read(pub.capture) == [], "the drained capture still has unconfirmed transactions"
        stored = [m.headers[HEADER_EVENT_ID] for m in await stored_records(r)]
        assert sorted(stored) == sorted(s.event_id for s in r.ledger.committed), "outbox rows != committed events"
        assert await prism_env.driver("store").log().end_offset(r.config.log) == 0, "cdc mode appended to the log"
        await check_delivered(r, await r.consumer.collect({s.event_id for s in r.ledger.committed}))
        await check_store(r)


@pytest.mark.parametrize("kind", KINDS)
async def test_transactions_committing_out_of_begin_order_are_published_in_commit_order(
    prism_env: PrismEnv, kind: Kind
) -> None:
    async with cdc_rigged(prism_env, prism_env.ns, kind) as r:
        pub = await started(r)
        a_begun, b_committed = asyncio.Event(), asyncio.Event()

        async def a_waits_for_b() -> None:
            a_begun.set()
            with suppress(TimeoutError):  # a backend that serialises makes B wait for A instead
                await asyncio.wait_for(b_committed.wait(), overlap_patience())
            if b_committed.is_set():
                assert await pub.run_once() == 1, "B committed, yet the feed did not publish it while A was open"

        async def b() -> None:
            await a_begun.wait()
            await r.transaction([("agg", b"B")])
            b_committed.set()

        b_task = asyncio.create_task(b())
        await r.transaction([("agg", b"A")], hold=a_waits_for_b)  # begins first, commits last (or aborts)
        await asyncio.wait_for(b_task, SETTLE)
        await pub.drain()
        # One aggregate: the sequence key makes the two conflict, so either A aborted, or the
        # store serialised them; what committed arrives in commit order, sequence 1, 2.
        await check_delivered(r, await r.consumer.collect({s.event_id for s in r.ledger.committed}))
        assert r.ledger.committed, "neither transaction committed"


@pytest.mark.parametrize("kind", KINDS)
async def test_the_events_of_one_transaction_arrive_in_the_order_they_were_staged(
    prism_env: PrismEnv, kind: Kind
) -> None:
    """A change feed need not report a transaction's rows in write order (PostgreSQL's are
    sorted by key, here random event ids): each aggregate's events must still come in the order
    the transaction staged them, with sequence 1, 2, 3..."""
    async with cdc_rigged(prism_env, prism_env.ns, kind) as r:
        pub = await started(r)
        await r.transaction([("one", f"first-{n}".encode()) for n in range(8)] + mixed_events(4))
        await r.transaction([("one", f"second-{n}".encode()) for n in range(4)])
        await pub.drain()
        if r.consumer.ordering is Ordering.NONE:
            pytest.skip(f"{prism_env.combination['sink']}'s {kind} declares no order to judge by")
        await check_delivered(r, await r.consumer.collect({s.event_id for s in r.ledger.committed}))


# --- a publisher killed between the sink's ack and the position's confirm ----------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", ["hang", "crash"])
@pytest.mark.parametrize("at", [1, 5])  # in the first batch, or a later one
async def test_a_publisher_killed_before_confirming_loses_nothing_and_republishes_with_the_same_ids(
    prism_env: PrismEnv, kind: Kind, mode: Literal["hang", "crash"], at: int
) -> None:
    async with cdc_rigged(prism_env, prism_env.ns, kind) as r:
        await started(r)
        await commit_all(r, mixed_events(9))
        traffic, fault = Traffic(), Fault(mode, at)
        victim = publisher(r, sink=Probe(r.consumer.sink, "p1", traffic, fault), fault=fault)
        task = asyncio.create_task(victim.run(asyncio.Event()))
        await asyncio.wait_for(fault.reached.wait(), SETTLE)
        if mode == "hang":
            task.cancel()  # killed while the sink hangs mid-batch
            with pytest.raises(asyncio.CancelledError):
                await task
        else:
            with pytest.raises(Killed):  # died right after the sink acknowledged
                await task
        restarted = publisher(r, sink=Probe(r.consumer.sink, "p2", traffic))
        assert await restarted.drain() > 0, "the restarted publisher published nothing"
        dedup = await check_delivered(r, await r.consumer.collect({s.event_id for s in r.ledger.committed}))
        if mode == "crash":
            # Acknowledged by the sink, never confirmed: at-least-once sends it again, same id.
            assert dedup.duplicates >= 1, "the event published just before the crash was not republished"
        else:
            assert dedup.duplicates == 0, "transactions the sink acknowledged before the hang were republished"


@pytest.mark.parametrize("kind", KINDS[:1])
async def test_an_outbox_row_rewritten_or_deleted_in_place_is_not_published_again(
    prism_env: PrismEnv, kind: Kind
) -> None:
    async with cdc_rigged(prism_env, prism_env.ns, kind) as r:
        pub = await started(r)
        await commit_all(r, mixed_events(3))
        assert await pub.drain() == 3
        store = prism_env.driver("store")
        kv = store.keyvalue()
        rows = sorted([key async for key in kv.scan(r.config.record_prefix)])
        assert len(rows) >= 2, f"expected the outbox rows of 3 events under {r.config.record_prefix!r}, found {rows}"
        async with store.transactions().transaction() as tx:  # a manual repair and a cleanup
            await tx.put(rows[0], await tx.get(rows[0]) or b"")
            await tx.delete(rows[-1])
        again = await pub.drain()
        assert again == 0, (
            f"rewriting one outbox row and deleting another published {again} events: only inserted rows are events"
        )


# --- concurrent producers ----------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_concurrent_producers_with_a_running_publisher_keep_every_aggregate_in_order(
    prism_env: PrismEnv, kind: Kind
) -> None:
    async with cdc_rigged(prism_env, prism_env.ns, kind) as r:
        pub = await started(r)

        async def producer(n: int) -> None:
            # Each producer owns its aggregates (so the ledger's order is each one's commit
            # order); transactions of different producers interleave, one in four rolls back.
            rnd = random.Random(n)
            for _ in range(TRANSACTIONS):
                events = [(f"p{n}-{rnd.randrange(2)}", rnd.randbytes(8)) for _ in range(rnd.randint(1, 3))]
                await r.transaction(events, commit=rnd.random() >= 0.25)
                await asyncio.sleep(0)

        stop = asyncio.Event()
        running = asyncio.create_task(pub.run(stop))
        try:
            await asyncio.gather(*(producer(n) for n in range(PRODUCERS)))
        finally:
            stop.set()
            await asyncio.wait_for(running, SETTLE)
        await pub.drain()
        assert r.ledger.rolled_back, "the workload must roll some transactions back"
        dedup = await check_delivered(r, await r.consumer.collect({s.event_id for s in r.ledger.committed}))
        assert dedup.duplicates == 0, f"{dedup.duplicates} duplicates without any failure"
        assert pub.metrics.confirms >= 1


# --- the store's server killed -------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_the_store_server_killed_and_restarted_loses_nothing(prism_env: PrismEnv, kind: Kind) -> None:
    """With process control the server is SIGKILLed; embedded stores are closed and reopened."""
    if prism_env.combination["store"] == prism_env.combination["sink"] and kind == "pubsub":
        pytest.skip("the pub/sub subscription lives in the restarted server: nothing to judge delivery by")
    async with cdc_rigged(prism_env, prism_env.ns, kind) as r:
        pub = await started(r)
        await commit_all(r, mixed_events(6))
        await pub.run_once()  # part of the stream published and confirmed
        store = await prism_env.restart("store")
        r.consumer.reconnect(prism_env.driver("sink"))  # the same backend may fill both slots
        r.outbox = Outbox(store.transactions(), r.config)
        await commit_all(r, mixed_events(6, start=6))
        await publisher(r, store=store).drain()
        await check_delivered(r, await r.consumer.collect({s.event_id for s in r.ledger.committed}))


# --- setup mistakes are loud ---------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS[:1])
async def test_rows_committed_before_the_capture_exists_are_refused_not_lost(prism_env: PrismEnv, kind: Kind) -> None:
    async with cdc_rigged(prism_env, prism_env.ns, kind) as r:
        await commit_all(r, mixed_events(2))  # no capture yet: the feed will never report these
        with pytest.raises(RecordsBeforeCapture, match="start the publisher before producers commit"):
            await started(r)
        assert pub_captures(await prism_env.leftovers()) == [], "the refused capture was left behind"
        with pytest.raises(OutboxConfigurationError, match="mode is 'cdc'"):
            OutboxRelay(
                prism_env.driver("store").log(), prism_env.driver("store").keyvalue(), r.consumer.sink, r.config, "r1"
            )


@pytest.mark.parametrize("kind", KINDS[:1])
async def test_an_idle_publisher_confirms_heartbeats(prism_env: PrismEnv, kind: Kind) -> None:
    async with cdc_rigged(prism_env, prism_env.ns, kind) as r:
        pub = await started(r)
        await prism_env.driver("store").keyvalue().put(prism_env.ns.name("not-captured"), b"x")  # traffic elsewhere
        for _ in range(40):
            await pub.run_once()
            if pub.metrics.heartbeats and pub.metrics.position:
                break
            await asyncio.sleep(0.02)
        assert pub.metrics.heartbeats >= 1
        assert pub.metrics.position > 0, "an idle capture never confirmed its heartbeat"


def pub_captures(leftovers: dict[str, list[str]]) -> list[str]:
    return [x for found in leftovers.values() for x in found if x.startswith(CAPTURED)]
