"""Acceptance suite of the transactional outbox (RFC-009 §7), alone and composed with claim check.

Runs once per (store x sink) combination: ``store`` holds the business rows, the outbox log and
the relay's lease and offset (its transactions make row + event atomic); ``sink`` is where
relays publish, and every test runs once per messaging interface the sink backend provides.

What it guarantees: every event of a committed transaction is delivered (at least once, with a
stable event id to deduplicate on), no event of a rolled-back or aborted transaction ever is,
and each aggregate's events arrive in commit order with sequence 1, 2, 3...; this holds with
two relays running at once, with a relay killed mid-batch and restarted, and with transactions
that commit in a different order than they began. Of two relays on clocks that disagree, over
a store slower than the lease, a renewal that lands after the other took the lease over fails
(one holder); a relay stopped gracefully hands its lease to another at once. Pending count, lag
and the mark-published offset are observable. With a claim check inside the transaction, outbox
records carry only the claim, consumers restore the exact payload and rolled-back transactions
leave no object.

Pub/sub is at-most-once fan-out: the consumer subscribes before any relay publishes.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import pytest
from hypothesis import given
from hypothesis import strategies as st

import prism_testkit.simulation.clock as clocks
from prism_testkit import Capability, Driver, KeyValue, Message, Ordering, PrismEnv, Slot, patience, prism_suite
from prism_testkit.errors import PayloadTooLarge, TransactionAborted
from prism_testkit.hunting.strategies import sized_payloads
from prism_testkit.isolation import Namespace
from prism_testkit.patterns.claim_check import ClaimCheck, ClaimCheckConfig
from prism_testkit.patterns.outbox import (
    HEADER_AGGREGATE_ID,
    HEADER_CREATED_AT,
    HEADER_EVENT_ID,
    HEADER_EVENT_TYPE,
    HEADER_SEQUENCE,
    Deduplicator,
    LeaseLost,
    LogSink,
    Outbox,
    OutboxConfig,
    OutboxConfigurationError,
    OutboxRelay,
    PubSubSink,
    QueueSink,
    ReservedHeader,
    Sink,
    TruncatableLog,
    decode_record,
)
from prism_testkit.simulation.clock import ManualClock

from ._doubles import Killed, Rollback
from ._helpers import (
    ReadPathTransactions,
    collect,
    eventually,
    norm,
    prism_settings,
    progress_at_first_pause,
)
from ._relay_faults import DyingKeyValue
from ._sink_reader import Kind, SinkReader

pytestmark = prism_suite(
    "outbox",
    store=Slot.needs("transactions", "keyvalue.cas", "log"),
    sink=Slot.one_of("queue", "log", "pubsub"),
)

KINDS: list[Kind] = ["queue", "log", "pubsub"]
AGGREGATES = ["a", "b", "c"]
THRESHOLD = 256  # claim-check threshold: small, so both sides of it are cheap
PATIENCE = 0.3  # on a quiet machine: how long an open transaction waits for a concurrent one (overlap_patience)
SETTLE = 10.0  # upper bound for relays / sinks to deliver everything (never reached when healthy)
TAIL_WAIT = 0.1  # after the last expected event: how long to listen for stray ones


Clock = Callable[[], float]


def overlap_patience() -> float:
    """How long an open transaction waits for a concurrent one to commit before it goes on (a
    backend that serialises transactions makes the other wait instead): :data:`PATIENCE` x the
    machine's slowness now, plus load mode's longest stall (``patience.quiet``), so a loaded
    machine still lets them overlap rather than checking the serialised case only."""
    return patience.quiet(PATIENCE)


# --- consumer side -------------------------------------------------------------------------


class Consumer:
    """The sink as relays see it (:attr:`sink`) and as a downstream consumer reads it."""

    def __init__(self, prism_env: PrismEnv, kind: Kind, ns: Namespace) -> None:
        driver = prism_env.driver("sink")
        if not driver.supports(Capability(kind)):
            pytest.skip(f"{driver.name} does not provide {kind}")
        self.kind, self.driver = kind, driver
        self.ordering = prism_env.spec("sink").properties.ordering
        self.destination = ns.name("events")
        self.received: list[Message] = []
        self.reader = SinkReader(lambda: self.driver, kind, self.destination, self.ordering, quiet=TAIL_WAIT)
        self.sink: Sink
        self.reconnect(driver)

    def reconnect(self, driver: Driver) -> None:
        """Read and publish through ``driver`` (a restarted server's new driver) from now on."""
        self.driver = driver
        self.sink = sink_of(driver, self.kind, self.destination)

    async def open(self) -> None:
        await self.reader.open()

    async def close(self) -> None:
        await self.reader.close()

    async def collect(self, expected: set[str]) -> list[Message]:
        """Everything delivered so far: until every ``expected`` event id has arrived (or the
        ``stall`` bound runs out: then what arrived, for the checker to judge), and every stray
        published along with them."""

        def complete() -> bool:
            return expected <= {m.headers.get(HEADER_EVENT_ID) for m in self.received}

        async def receive() -> int:
            self.received.extend(await self.reader.receive(TAIL_WAIT))
            return len(self.received)

        if not complete():
            try:
                await patience.until(
                    receive,
                    lambda _: complete(),
                    what=f"outbox: every expected event at {self.destination}",
                    stall="stall",
                    ceiling="stall",  # a plain bound: waited for at most, progress or not
                    every=0.0,  # each receive waits TAIL_WAIT itself
                )
            except patience.Unsettled:
                return list(self.received)  # no verdict of its own: the checker judges what arrived
        self.received.extend(await self.reader.until_now(clocks.monotonic() + SETTLE))
        return list(self.received)


def sink_of(driver: Driver, kind: Kind, destination: str) -> Sink:
    """The outbox sink publishing to ``destination`` through ``driver``'s ``kind`` interface."""
    if kind == "queue":
        return QueueSink(driver.queue(), destination)
    if kind == "log":
        return LogSink(driver.log(), destination)
    return PubSubSink(driver.pubsub(), destination)


# --- the system under test -----------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    """An event as the producer staged it, with the headers its caller gave."""

    event_id: str
    aggregate: str
    payload: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Ledger:
    """What the producers did: committed events in commit order, and the event ids (and
    business rows) of transactions that rolled back or aborted."""

    committed: list[Sent] = field(default_factory=list)
    rolled_back: set[str] = field(default_factory=set)
    rows: set[str] = field(default_factory=set)  # business keys written by committed transactions
    lost_rows: set[str] = field(default_factory=set)  # ... and by rolled-back ones


@dataclass
class OutboxHarness:
    """An outbox over the store with the consumer of its destination: relays built on demand,
    and a ledger of what the producers' transactions committed or rolled back."""

    prism_env: PrismEnv
    ns: Namespace
    config: OutboxConfig
    outbox: Outbox
    consumer: Consumer
    claim_check: ClaimCheck | None
    ledger: Ledger = field(default_factory=Ledger)
    _rows: Iterator[int] = field(default_factory=itertools.count)

    def relay(
        self, relay_id: str, *, sink: Sink | None = None, kv: KeyValue | None = None, clock: Clock = clocks.wall
    ) -> OutboxRelay:
        store = self.prism_env.driver("store")
        return OutboxRelay(
            store.log(), kv or store.keyvalue(), sink or self.consumer.sink, self.config, relay_id, clock=clock
        )

    async def transaction(
        self,
        events: list[tuple[str, bytes]],
        *,
        commit: bool = True,
        hold: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """One transaction with a business row and ``events``; ``hold`` is awaited inside the
        block, before it commits (or rolls back). Its outcome goes into the ledger."""
        row = self.ns.name(f"row-{next(self._rows)}")
        staged: list[Sent] = []
        try:
            async with self.outbox.transaction() as tx:
                await tx.put(row, b"business")
                for n, (aggregate, payload) in enumerate(events):
                    # Caller headers (a trace id, say) travel with the event, beside the outbox's own.
                    headers = {"trace-id": f"{row}/{n}"}
                    event_id = await tx.publish(aggregate, "Changed", payload, headers)
                    staged.append(Sent(event_id, aggregate, payload, headers))
                if hold is not None:
                    await hold()
                if not commit:
                    raise Rollback
        except (Rollback, TransactionAborted):
            # An abort is a legitimate outcome when two open transactions bump one aggregate's
            # sequence: the outbox must then publish nothing of the loser.
            self.ledger.rolled_back.update(s.event_id for s in staged)
            self.ledger.lost_rows.add(row)
        else:
            self.ledger.committed.extend(staged)
            self.ledger.rows.add(row)


def objects_driver(prism_env: PrismEnv) -> Driver:
    """The claim check's object store: the store's or the sink's backend, whichever has one."""
    for slot in ("store", "sink"):
        driver = prism_env.driver(slot)
        if driver.supports(Capability.OBJECTS):
            return driver
    pytest.skip(
        f"outbox + claim check needs an object store: neither {prism_env.driver('store').name} (store) "
        f"nor {prism_env.driver('sink').name} (sink) provides objects"
    )


async def rig(
    prism_env: PrismEnv,
    ns: Namespace,
    kind: Kind,
    *,
    claims: bool = False,
    clock: Clock = clocks.wall,
    read_path: bool = False,
    **config: Any,
) -> OutboxHarness:
    consumer = Consumer(prism_env, kind, ns)
    cc: ClaimCheck | None = None
    if claims:
        driver = objects_driver(prism_env)
        # "keep": consumers here never release, so what stays in the bucket is exactly the claims
        # of committed events, and an orphan of a rolled-back transaction shows up.
        cc = ClaimCheck(
            driver.objects(),
            ClaimCheckConfig(
                threshold=THRESHOLD,
                bucket=ns.name("claims"),
                ttl=patience.handed("outlive-run") if driver.supports(Capability.OBJECTS_TTL) else None,
                on_consume="keep",
            ),
        )
        await cc.ensure_bucket()
    # Small batches, so a handful of events already spans several of them.
    defaults = {
        "log": ns.name("outbox"),
        "batch_size": 3,
        "poll_interval": patience.handed("poll"),
        "lease_ttl": patience.handed("lease"),
    }
    cfg = OutboxConfig(**{**defaults, **config})
    transactions = prism_env.driver("store").transactions()
    if read_path:
        transactions = ReadPathTransactions(transactions)
    outbox = Outbox(transactions, cfg, clock=clock, claim_check=cc)
    await consumer.open()
    return OutboxHarness(prism_env, ns, cfg, outbox, consumer, cc)


@asynccontextmanager
async def rigged(prism_env: PrismEnv, ns: Namespace, kind: Kind, **options: Any) -> AsyncIterator[OutboxHarness]:
    """:func:`rig` (same options), its consumer closed when the block ends."""
    r = await rig(prism_env, ns, kind, **options)
    try:
        yield r
    finally:
        await r.consumer.close()


# --- checks --------------------------------------------------------------------------------


async def check_delivered(r: OutboxHarness, received: list[Message]) -> Deduplicator:
    """Every committed event delivered with its payload, none from a rolled-back transaction,
    duplicates only as identical copies of one event id, each aggregate in commit order."""
    ledger, cc = r.ledger, r.claim_check
    by_id = {s.event_id: s for s in ledger.committed}
    dedup = Deduplicator()
    first: dict[str, Message] = {}
    for message in received:
        event_id = message.headers.get(HEADER_EVENT_ID)
        assert event_id not in ledger.rolled_back, f"event {event_id} of a rolled-back transaction was published"
        assert event_id in by_id, f"an event nobody committed was published: {message.headers}"
        if dedup.first_time(message):
            first[event_id] = message
        else:
            assert norm(message) == norm(first[event_id]), f"event {event_id} was republished with other content"
    lost = [s for s in ledger.committed if s.event_id not in first]
    assert not lost, f"{len(lost)} of {len(ledger.committed)} committed events were never delivered: {lost}"
    for event_id, message in first.items():
        sent = by_id[event_id]
        assert message.headers[HEADER_AGGREGATE_ID] == sent.aggregate
        assert message.headers.get(HEADER_EVENT_TYPE) == "Changed", f"event {event_id} lost its type"
        given = {name: message.headers.get(name) for name in sent.headers}
        assert given == sent.headers, f"event {event_id} arrived with caller headers {given}, given {sent.headers}"
        if cc is not None:
            claimed = len(sent.payload) > THRESHOLD
            assert (cc.config.field in message.headers) == claimed, f"claimed={claimed} for {len(sent.payload)} bytes"
            if claimed:
                assert bytes(message.payload) == b"", "a claimed event must carry only the claim"
            message = await cc.incoming(message)
        assert bytes(message.payload) == sent.payload, f"event {event_id} arrived with another payload"
    if r.consumer.ordering is not Ordering.NONE:
        # Dedup keeps first copies, so a redelivered batch cannot hide a reordering.
        for aggregate in {s.aggregate for s in ledger.committed}:
            want = [s.event_id for s in ledger.committed if s.aggregate == aggregate]
            got = [i for i in first if by_id[i].aggregate == aggregate]
            assert got == want, f"aggregate {aggregate!r} delivered out of commit order"
            sequences = [int(first[i].headers[HEADER_SEQUENCE]) for i in got]
            assert sequences == list(range(1, len(got) + 1)), f"aggregate {aggregate!r}: sequence {sequences}"
    return dedup


async def check_store(r: OutboxHarness) -> None:
    """Business rows exist exactly for committed transactions; with a claim check, the bucket
    holds exactly the objects of committed claimed events (no orphan of a rollback)."""
    kv = r.prism_env.driver("store").keyvalue()
    for row in r.ledger.rows:
        assert await kv.get(row) == b"business", f"the business row {row} of a committed transaction is missing"
    for row in r.ledger.lost_rows:
        assert await kv.get(row) is None, f"the business row {row} of a rolled-back transaction was written"
    if r.claim_check is not None:
        cc = r.claim_check
        stored = set(await collect(cc.objects.list_keys(cc.config.bucket)))
        want = set()
        for message in await stored_records(r):
            ref = cc.reference(message)
            if ref is not None:
                want.add(ref.key)
        assert len(want) == sum(len(s.payload) > THRESHOLD for s in r.ledger.committed)
        assert stored == want, f"objects without a committed record: {sorted(stored - want)}"


async def stored_records(r: OutboxHarness) -> list[Message]:
    """The outbox's records as the store keeps them: log records, or rows in publisher mode cdc."""
    store = r.prism_env.driver("store")
    if not r.config.cdc:
        return [record.message for record in await store.log().read(r.config.log, 0, limit=10_000)]
    kv = store.keyvalue()
    rows = []
    async for key in kv.scan(r.config.record_prefix):
        value = await kv.get(key)
        assert value is not None, f"outbox row {key} vanished"
        rows.append(decode_record(key, value)[1])
    return rows


async def drain(relay: OutboxRelay) -> int:
    total = 0
    while published := await relay.run_once():
        total += published
    return total


async def settled(relay: OutboxRelay) -> bool:
    return await eventually(lambda: _drained(relay), within=SETTLE)


async def _drained(relay: OutboxRelay) -> bool:
    return await relay.pending() == 0


# --- generated histories -------------------------------------------------------------------


@dataclass(frozen=True)
class Tx:
    events: list[tuple[str, bytes]]
    commit: bool
    overlap: bool  # held open while the next transaction begins and commits
    relay_after: bool  # a relay batch runs right after this transaction


EVENTS = st.lists(
    st.tuples(
        st.sampled_from(AGGREGATES),
        st.one_of(sized_payloads(0, THRESHOLD), sized_payloads(THRESHOLD + 1, 4 * THRESHOLD)),
    ),
    max_size=3,
)
TXS = st.lists(
    st.builds(Tx, events=EVENTS, commit=st.booleans(), overlap=st.booleans(), relay_after=st.booleans()),
    min_size=1,
    max_size=6,
)


class RunsOnce(Protocol):
    """A relay's one step: the outbox relay, or the change feed's publisher (test_outbox_cdc)."""

    async def run_once(self) -> int: ...


async def play(r: OutboxHarness, txs: list[Tx], relay: RunsOnce) -> None:
    """Run ``txs`` in order; an ``overlap`` transaction stays open while the next one begins
    and commits (so it commits out of begin order), and a relay batch runs in between."""
    pending = list(txs)
    while pending:
        tx = pending.pop(0)
        if tx.overlap and pending:
            late = pending.pop(0)
            task: asyncio.Future[None] | None = None

            async def hold(late: Tx = late) -> None:
                nonlocal task
                task = asyncio.ensure_future(r.transaction(late.events, commit=late.commit))
                # A backend that serialises transactions makes ``late`` wait for us: go on.
                await asyncio.wait({task}, timeout=overlap_patience())
                if task.done():
                    task.result()
                    await relay.run_once()  # moves past ``late`` while ``tx`` is still open

            await r.transaction(tx.events, commit=tx.commit, hold=hold)
            assert task is not None
            await asyncio.wait_for(task, SETTLE)
        else:
            await r.transaction(tx.events, commit=tx.commit)
        if tx.relay_after:
            await relay.run_once()


# "sequence-read": the outbox reads and bumps each aggregate's sequence in the transaction, as
# over a store without transactions.numbering (every built-in transactional store has it).
COMPOSITES = [(kind, composite) for composite in ("plain", "claim-check") for kind in KINDS]
COMPOSITES.append((KINDS[0], "sequence-read"))


@pytest.mark.parametrize(("kind", "composite"), COMPOSITES)
@prism_settings
@given(txs=TXS)
async def test_generated_transactions_deliver_exactly_the_committed_events(
    prism_env: PrismEnv, kind: Kind, composite: str, txs: list[Tx]
) -> None:
    claims, read_path = composite == "claim-check", composite == "sequence-read"
    async with prism_env.example() as ns, rigged(prism_env, ns, kind, claims=claims, read_path=read_path) as r:
        relay = r.relay("r1")
        await play(r, txs, relay)
        await drain(relay)
        assert await relay.pending() == 0
        end = await prism_env.driver("store").log().end_offset(r.config.log)
        assert end == len(r.ledger.committed), "the outbox holds other records than the committed events"
        assert await relay.committed() == end
        await check_delivered(r, await r.consumer.collect({s.event_id for s in r.ledger.committed}))
        await check_store(r)
    assert await prism_env.leftovers(ns) == {}


# --- several relays, killed relays ---------------------------------------------------------


@dataclass
class Traffic:
    """What every probe saw, across relays: who published which event, and overlap."""

    published: list[tuple[str, str]] = field(default_factory=list)  # (relay id, event id)
    in_flight: int = 0
    max_in_flight: int = 0

    def relays(self) -> set[str]:
        return {relay_id for relay_id, _ in self.published}


@dataclass
class Fault:
    """Where a relay dies: ``hang`` before its ``at``-th publish (the test then cancels it), or
    ``crash`` right after the ``at``-th publish reached the sink, before anything else."""

    mode: Literal["hang", "crash"]
    at: int
    reached: asyncio.Event = field(default_factory=asyncio.Event)
    dead: bool = False

    def check(self) -> None:
        if self.dead:
            raise Killed


class Probe:
    """A sink in front of the real one that records traffic and can carry a :class:`Fault`."""

    def __init__(self, inner: Sink, relay_id: str, traffic: Traffic, fault: Fault | None = None) -> None:
        self.inner, self.relay_id, self.traffic, self.fault = inner, relay_id, traffic, fault
        self.count = 0

    async def publish(self, message: Message) -> None:
        fault = self.fault
        if fault is not None:
            fault.check()
        self.count += 1
        if fault is not None and fault.mode == "hang" and self.count == fault.at:
            fault.reached.set()
            await asyncio.Event().wait()  # a sink that never answers
        self.traffic.in_flight += 1
        self.traffic.max_in_flight = max(self.traffic.max_in_flight, self.traffic.in_flight)
        try:
            await asyncio.sleep(0)  # let another relay in, if its lease (wrongly) allowed it
            await self.inner.publish(message)
        finally:
            self.traffic.in_flight -= 1
        self.traffic.published.append((self.relay_id, message.headers[HEADER_EVENT_ID]))
        if fault is not None and fault.mode == "crash" and self.count == fault.at:
            fault.dead = True
            fault.reached.set()
            raise Killed


def mixed_events(count: int, start: int = 0) -> list[tuple[str, bytes]]:
    return [(AGGREGATES[n % len(AGGREGATES)], f"event-{n}".encode()) for n in range(start, start + count)]


async def commit_all(r: OutboxHarness, events: list[tuple[str, bytes]]) -> None:
    """One transaction per event, and one rolled-back transaction in the middle."""
    for n, event in enumerate(events):
        await r.transaction([event])
        if n == len(events) // 2:
            await r.transaction([("a", b"never")], commit=False)


async def stop(task: asyncio.Task[None], event: asyncio.Event) -> None:
    event.set()
    await asyncio.wait_for(task, SETTLE)


@pytest.mark.parametrize("kind", KINDS)
async def test_two_concurrent_relays_lose_nothing_and_keep_aggregate_order(prism_env: PrismEnv, kind: Kind) -> None:
    async with rigged(prism_env, prism_env.ns, kind, batch_size=2) as r:
        traffic = Traffic()
        relays = {i: r.relay(i, sink=Probe(r.consumer.sink, i, traffic)) for i in ("r1", "r2")}
        stops = {i: asyncio.Event() for i in relays}
        first = asyncio.create_task(relays["r1"].run(stops["r1"]))
        assert await eventually(lambda: _holds(relays["r1"]), within=SETTLE), "r1 never took the lease"
        second = asyncio.create_task(relays["r2"].run(stops["r2"]))
        try:
            # Both run while transactions commit; the lease lets one publish at a time.
            await commit_all(r, mixed_events(9))
            assert await settled(relays["r1"])
            # r1 goes away (releasing its lease); r2, polling all along, must take over.
            await stop(first, stops["r1"])
            await commit_all(r, mixed_events(9, start=9))
            assert await settled(relays["r2"])
        finally:
            for task, name in ((first, "r1"), (second, "r2")):
                await stop(task, stops[name])
        assert traffic.relays() == {"r1", "r2"}, f"only {traffic.relays()} published: no handover happened"
        assert traffic.max_in_flight == 1, "two relays published at the same time"
        dedup = await check_delivered(r, await r.consumer.collect({s.event_id for s in r.ledger.committed}))
        # Nobody was killed and the lease never ran out, so nothing had to be republished.
        assert dedup.duplicates == 0, f"{dedup.duplicates} duplicates without any failure"


async def _holds(relay: OutboxRelay) -> bool:
    return relay.holds_lease


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", ["hang", "crash"])
@pytest.mark.parametrize("at", [1, 4])  # the first batch, or a later one
async def test_a_relay_killed_mid_batch_loses_nothing_and_resumes(
    prism_env: PrismEnv, kind: Kind, mode: Literal["hang", "crash"], at: int
) -> None:
    async with rigged(prism_env, prism_env.ns, kind, batch_size=3) as r:
        await commit_all(r, mixed_events(8))
        traffic, fault = Traffic(), Fault(mode, at)
        store_kv = prism_env.driver("store").keyvalue()
        victim = r.relay("r1", sink=Probe(r.consumer.sink, "r1", traffic, fault), kv=DyingKeyValue(store_kv, fault))
        task = asyncio.create_task(victim.run(asyncio.Event()))
        await asyncio.wait_for(fault.reached.wait(), SETTLE)
        if mode == "hang":
            task.cancel()  # killed while the sink hangs mid-batch
            with pytest.raises(asyncio.CancelledError):
                await task
        else:
            with pytest.raises(Killed):
                await task
        # A new instance under the same relay id resumes at once (no lease wait) ...
        restarted = r.relay("r1", sink=Probe(r.consumer.sink, "r1", traffic))
        assert await drain(restarted) > 0, "the restarted relay published nothing"
        assert await restarted.pending() == 0
        # ... and everything arrives, duplicates being identical copies of one event id.
        dedup = await check_delivered(r, await r.consumer.collect({s.event_id for s in r.ledger.committed}))
        if mode == "crash":
            # Published but never committed: at-least-once means it comes again, same id.
            assert dedup.duplicates >= 1, "the event published just before the crash was not republished"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("driven", ["run", "lifecycle"])
async def test_a_relay_with_several_batches_pending_publishes_them_without_pausing(
    prism_env: PrismEnv, kind: Kind, driven: str
) -> None:
    """More records pending than one batch: a relay in the background publishes batch after
    batch and pauses its poll interval only once nothing is left (a pause after each full batch
    costs a poll interval per batch: throughput a test with one batch pending never sees). The
    poll interval outlasts the test, so where the first pause fell is read from the relay's
    count of published events, not timed."""
    poll = patience.handed("outlive-run")
    lease = 3 * patience.handed("outlive-run")  # outlives the poll: no takeover, one relay
    async with rigged(prism_env, prism_env.ns, kind, batch_size=3, poll_interval=poll, lease_ttl=lease) as r:
        await commit_all(r, mixed_events(10))
        relay = r.relay("r1")
        first = await progress_at_first_pause(relay, driven, lambda: relay.metrics.events_relayed)
        assert first == 10, (
            f"the relay paused its poll interval after publishing {first} of 10 pending events (batches of 3): "
            "it waits a poll interval per full batch"
        )
        dedup = await check_delivered(r, await r.consumer.collect({s.event_id for s in r.ledger.committed}))
        assert dedup.duplicates == 0


# --- commit order, observability, cleanup --------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_transactions_committing_out_of_begin_order_are_never_skipped(prism_env: PrismEnv, kind: Kind) -> None:
    async with rigged(prism_env, prism_env.ns, kind) as r:
        relay = r.relay("r1")
        a_begun, b_committed = asyncio.Event(), asyncio.Event()
        passed_b: list[int] = []

        async def a_waits_for_b() -> None:
            a_begun.set()
            with suppress(TimeoutError):  # a backend that serialises makes B wait for A instead
                await asyncio.wait_for(b_committed.wait(), overlap_patience())
            if b_committed.is_set():
                passed_b.append(await relay.run_once())  # the relay moves past B while A is open

        async def b() -> None:
            await a_begun.wait()
            await r.transaction([("agg-b", b"B")])
            b_committed.set()

        b_task = asyncio.create_task(b())
        await r.transaction([("agg-a", b"A")], hold=a_waits_for_b)  # begins first, commits last
        await asyncio.wait_for(b_task, SETTLE)
        a, b_ = (next(s for s in r.ledger.committed if s.aggregate == agg) for agg in ("agg-a", "agg-b"))
        if passed_b:
            assert passed_b == [1], "the relay did not publish B while A was still open"
            assert r.ledger.committed == [b_, a], "B committed first"
        await drain(relay)
        assert await relay.pending() == 0
        received = await r.consumer.collect({a.event_id, b_.event_id})
        await check_delivered(r, received)
        assert [m.headers[HEADER_EVENT_ID] for m in received] == [s.event_id for s in r.ledger.committed]


@pytest.mark.parametrize("kind", KINDS)
async def test_pending_and_lag_are_observable(prism_env: PrismEnv, kind: Kind) -> None:
    clock = ManualClock(1_000.0)
    async with rigged(prism_env, prism_env.ns, kind, batch_size=2, clock=clock) as r:
        relay = r.relay("r1", clock=clock)
        assert (await relay.pending(), await relay.lag()) == (0, 0.0)
        for n in range(5):  # created at 1000, 1001, ... 1004
            await r.transaction([("agg", f"e{n}".encode())])
            clock.advance(1)
        clock.now = 1_010.0
        assert await relay.pending() == 5
        assert await relay.lag() == pytest.approx(10.0)  # the oldest unrelayed event is 10 s old
        assert await relay.run_once() == 2
        assert await relay.pending() == 3
        assert await relay.lag() == pytest.approx(8.0)  # now the one created at 1002
        await drain(relay)
        assert (await relay.pending(), await relay.lag()) == (0, 0.0)
        await check_delivered(r, await r.consumer.collect({s.event_id for s in r.ledger.committed}))


@pytest.mark.parametrize("kind", KINDS)
async def test_mark_published_keeps_records_and_advances_the_committed_offset(prism_env: PrismEnv, kind: Kind) -> None:
    async with rigged(prism_env, prism_env.ns, kind, batch_size=3, cleanup="mark-published") as r:
        store_log = prism_env.driver("store").log()
        relay = r.relay("r1")
        await commit_all(r, mixed_events(4))
        assert await relay.committed() == 0
        assert await relay.run_once() == 3
        assert await relay.committed() == 3
        assert await store_log.committed(r.config.log, r.config.group) == 3  # the mirror for log tools
        assert await relay.run_once() == 1
        assert await relay.committed() == await store_log.end_offset(r.config.log) == 4
        # Published, yet kept: the outbox doubles as an audit trail.
        records = await store_log.read(r.config.log, 0)
        assert [rec.message.headers[HEADER_EVENT_ID] for rec in records] == [s.event_id for s in r.ledger.committed]
        await check_delivered(r, await r.consumer.collect({s.event_id for s in r.ledger.committed}))


async def test_delete_cleanup_needs_a_truncatable_log(prism_env: PrismEnv) -> None:
    store = prism_env.driver("store")
    cfg = OutboxConfig(log=prism_env.ns.name("outbox"), cleanup="delete", retention=0.0)
    sink = LogSink(store.log(), prism_env.ns.name("events"))
    if isinstance(store.log(), TruncatableLog):
        outbox = Outbox(store.transactions(), cfg)
        async with outbox.transaction() as tx:
            await tx.publish("agg", "E", b"x")
        relay = OutboxRelay(store.log(), store.keyvalue(), sink, cfg, "r1")
        assert await relay.run_once() == 1
        assert relay.metrics.truncated_below == 1
    else:
        with pytest.raises(OutboxConfigurationError, match="mark-published"):
            OutboxRelay(store.log(), store.keyvalue(), sink, cfg, "r1")


@pytest.mark.parametrize("kind", KINDS)
async def test_delete_cleanup_truncates_only_records_published_longer_ago_than_the_retention(
    prism_env: PrismEnv, kind: Kind
) -> None:
    store = prism_env.driver("store")
    if not isinstance(store.log(), TruncatableLog):
        pytest.skip(f"{store.name}'s log cannot truncate (see test_delete_cleanup_needs_a_truncatable_log)")
    clock = ManualClock(1_000.0)
    async with rigged(prism_env, prism_env.ns, kind, batch_size=3, cleanup="delete", retention=60.0, clock=clock) as r:
        log, relay = store.log(), r.relay("r1", clock=clock)

        async def kept() -> list[int]:
            return [record.offset for record in await log.read(r.config.log, 0, limit=1000)]

        await commit_all(r, mixed_events(6))
        assert await relay.run_once() == 3  # published at 1000
        clock.advance(30)
        assert await relay.run_once() == 3  # published at 1030
        assert await kept() == list(range(6)), "records went before their retention ran out"
        clock.advance(45)  # 1075: the first batch was published 75 s ago, the second 45 s ago
        await commit_all(r, mixed_events(3, start=6))
        assert await relay.run_once() == 3
        assert await kept() == list(range(3, 9)), "only the batch older than the retention may go"
        assert relay.metrics.truncated_below == 3
        assert await relay.pending() == 0
        # A restarted relay resumes after the truncated part, and truncation goes on from there.
        restarted = r.relay("r1", clock=clock)
        await commit_all(r, mixed_events(3, start=9))
        clock.advance(120)
        assert await drain(restarted) == 3
        clock.advance(120)
        await commit_all(r, mixed_events(1, start=12))
        assert await drain(restarted) == 1
        assert (await kept())[0] >= 9, "the restarted relay never truncated"
        assert await log.end_offset(r.config.log) == 13, "truncation moved the end of the outbox"
        await check_delivered(r, await r.consumer.collect({s.event_id for s in r.ledger.committed}))


@pytest.mark.parametrize("kind", KINDS[:1])
async def test_delete_cleanup_counts_the_retention_from_each_records_own_publication(
    prism_env: PrismEnv, kind: Kind
) -> None:
    """Two batches published a moment apart: when the first is a retention old, the second is
    not yet, and neither may go; both go once the second is too."""
    store = prism_env.driver("store")
    if not isinstance(store.log(), TruncatableLog):
        pytest.skip(f"{store.name}'s log cannot truncate (see test_delete_cleanup_needs_a_truncatable_log)")
    clock, retention = ManualClock(1_000.0), 60.0
    async with rigged(
        prism_env, prism_env.ns, kind, batch_size=3, cleanup="delete", retention=retention, clock=clock
    ) as r:
        log, relay = store.log(), r.relay("r1", clock=clock)

        async def kept() -> list[int]:
            return [record.offset for record in await log.read(r.config.log, 0, limit=1000)]

        await commit_all(r, mixed_events(6))
        assert await relay.run_once() == 3  # offsets 0-2, published at 1000
        apart = retention / 1000  # a moment later
        clock.advance(apart)
        assert await relay.run_once() == 3  # offsets 3-5, published at 1000.06
        clock.advance(retention - apart / 2)  # the first batch is older than the retention, the second is not
        await commit_all(r, mixed_events(3, start=6))
        assert await relay.run_once() == 3  # a batch: the relay cleans up after it
        young = set(range(3, 9))
        assert young <= set(await kept()), (
            f"records {sorted(young - set(await kept()))} were truncated {retention - apart / 2:.2f}s after they "
            f"were published, before their retention of {retention:.0f}s"
        )
        clock.advance(2 * retention)
        await commit_all(r, mixed_events(1, start=9))
        assert await relay.run_once() == 1
        assert (await kept())[0] >= 6, f"records published {2 * retention:.0f}s ago were never truncated"
        await check_delivered(r, await r.consumer.collect({s.event_id for s in r.ledger.committed}))


@pytest.mark.parametrize("kind", KINDS)
async def test_delete_cleanup_with_no_retention_never_takes_an_unpublished_record(
    prism_env: PrismEnv, kind: Kind
) -> None:
    store = prism_env.driver("store")
    if not isinstance(store.log(), TruncatableLog):
        pytest.skip(f"{store.name}'s log cannot truncate (see test_delete_cleanup_needs_a_truncatable_log)")
    async with rigged(prism_env, prism_env.ns, kind, batch_size=2, cleanup="delete", retention=0.0) as r:
        relay = r.relay("r1")
        await commit_all(r, mixed_events(7))
        while await relay.run_once():
            await r.transaction([("late", f"late-{await relay.pending()}".encode())])  # commits between batches
            if len(r.ledger.committed) > 12:
                break
        await drain(relay)
        assert await relay.pending() == 0
        await check_delivered(r, await r.consumer.collect({s.event_id for s in r.ledger.committed}))


# --- leases under contention -----------------------------------------------------------------


class Yielding:
    """The store's key-value, yielding to the other tasks before every call, as a networked
    store's round trip does: two relays' read-then-compare-and-set steps interleave."""

    def __init__(self, inner: KeyValue) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if name == "scan" or not callable(attribute):
            return attribute

        async def yielding(*args: Any, **kwargs: Any) -> Any:
            for _ in range(3):
                await asyncio.sleep(0)
            return await attribute(*args, **kwargs)

        return yielding


class LeaseChecked:
    """A sink that checks, before each publish, that its relay holds an unexpired lease by
    the shared clock (read from the store, not from the relay's belief), and can let time
    pass during each publish."""

    def __init__(
        self, r: OutboxHarness, relay_id: str, clock: ManualClock, published: list[str], advance: float = 0.0
    ) -> None:
        self.r, self.relay_id, self.clock, self.published, self.advance = r, relay_id, clock, published, advance
        self.kv = r.prism_env.driver("store").keyvalue()

    async def publish(self, message: Message) -> None:
        raw = await self.kv.get(self.r.config.lease)
        lease = json.loads(raw) if raw is not None else None
        assert lease is not None, f"{self.relay_id} published without any lease"
        assert lease["holder"] == self.relay_id, f"{self.relay_id} published while {lease['holder']} held the lease"
        assert self.clock() < lease["expires_at"], f"{self.relay_id} published after its lease ran out"
        await self.r.consumer.sink.publish(message)
        self.published.append(self.relay_id)
        self.clock.advance(self.advance)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("lease", ["free", "expired"])
async def test_relays_racing_for_a_lease_elect_exactly_one_publisher(
    prism_env: PrismEnv, kind: Kind, lease: str
) -> None:
    clock = ManualClock()
    async with rigged(prism_env, prism_env.ns, kind, batch_size=20, clock=clock) as r:
        store_kv = prism_env.driver("store").keyvalue()
        published: list[str] = []

        def contender(relay_id: str) -> OutboxRelay:
            sink = LeaseChecked(r, relay_id, clock, published)
            return r.relay(relay_id, sink=sink, kv=Yielding(store_kv), clock=clock)

        old = contender("r0")
        if lease == "expired":
            await commit_all(r, mixed_events(4))
            assert await old.run_once() > 0
            clock.advance(r.config.lease_ttl * 1.5)  # r0 stalls; its lease runs out
        await commit_all(r, mixed_events(6, start=4))
        racers = [contender("r1"), contender("r2")]
        before = len(published)
        outcomes = await asyncio.gather(*(racer.run_once() for racer in racers), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException) and not isinstance(outcome, LeaseLost):
                raise outcome
        holders = [racer for racer in racers if racer.holds_lease]
        assert len(holders) == 1, f"{len(holders)} relays believe they hold the lease"
        assert set(published[before:]) <= {holders[0].relay_id}, "the relay that lost the race published"
        if lease == "expired":
            with suppress(LeaseLost):
                assert await old.run_once() == 0, "the relay whose lease ran out published again"
        await drain(holders[0])
        dedup = await check_delivered(r, await r.consumer.collect({s.event_id for s in r.ledger.committed}))
        assert dedup.duplicates == 0, "a race for the lease republished events"


@pytest.mark.parametrize("kind", KINDS)
async def test_a_lease_running_out_during_a_batch_stops_the_batch(prism_env: PrismEnv, kind: Kind) -> None:
    clock = ManualClock()
    async with rigged(prism_env, prism_env.ns, kind, batch_size=10, clock=clock) as r:
        published: list[str] = []
        await commit_all(r, mixed_events(8))
        # Each publish takes 40 % of the lease: the batch must stop before the lease runs out.
        stalling = LeaseChecked(r, "r1", clock, published, advance=r.config.lease_ttl * 0.4)
        slow = r.relay("r1", sink=stalling, clock=clock)
        first = await slow.run_once()
        assert 0 < first < 8, f"published {first} of 8 events on one lease of {r.config.lease_ttl}s"
        assert slow.metrics.batches_cut_short == 1
        clock.advance(r.config.lease_ttl * 1.1)  # r1 stalls past its lease; r2 takes over
        successor = r.relay("r2", sink=LeaseChecked(r, "r2", clock, published), clock=clock)
        assert await drain(successor) == 8 - first, "the successor did not resume where r1's commit left off"
        with suppress(LeaseLost):
            assert await slow.run_once() == 0, "the relay whose lease ran out published again"
        dedup = await check_delivered(r, await r.consumer.collect({s.event_id for s in r.ledger.committed}))
        assert dedup.duplicates == 0


@pytest.mark.parametrize("kind", KINDS)
async def test_a_relay_renewing_its_lease_keeps_it_for_many_lease_periods(prism_env: PrismEnv, kind: Kind) -> None:
    """A holder that polls well within its lease renews it each time: it goes on publishing
    for as long as it runs, and a standby polling beside it never takes over."""
    clock = ManualClock()
    async with rigged(prism_env, prism_env.ns, kind, clock=clock) as r:
        published: list[str] = []
        holder = r.relay("r1", sink=LeaseChecked(r, "r1", clock, published), clock=clock)
        standby = r.relay("r2", sink=LeaseChecked(r, "r2", clock, published), clock=clock)
        rounds, step = 10, 0.4  # four lease periods, a renewal every 0.4 of one
        for n in range(rounds):
            await r.transaction([(AGGREGATES[n % len(AGGREGATES)], f"event-{n}".encode())])
            assert await holder.run_once() == 1, (
                f"after {n * step:.1f} lease periods of renewals every {step}, the holder published nothing: "
                "its renewals did not extend its lease"
            )
            assert await standby.run_once() == 0, "the standby published while the holder was renewing its lease"
            clock.advance(r.config.lease_ttl * step)
        assert set(published) == {"r1"}, f"relays that published: {sorted(set(published))}"
        assert standby.metrics.lease_acquisitions == 0, "the standby took the lease of a relay renewing it"
        dedup = await check_delivered(r, await r.consumer.collect({s.event_id for s in r.ledger.committed}))
        assert dedup.duplicates == 0


class SlowLeaseStore:
    """A relay's key-value as a store slower than the lease sees it, on the lease key only:
    ``lose_answer`` applies the next lease write but loses its answer (the relay's lease in
    memory is then older than the stored one); ``stall(n, meanwhile)`` holds the ``n``-th lease
    write from now until ``meanwhile`` (the lease running out and a successor taking it over)
    has happened, then lets it land."""

    def __init__(self, inner: KeyValue, lease_key: str) -> None:
        self.inner, self.lease_key = inner, lease_key
        self.lose_answer = False
        self._stall: tuple[int, Callable[[], Awaitable[None]]] | None = None
        self.stalled = False  # the stalled write landed

    def stall(self, nth: int, meanwhile: Callable[[], Awaitable[None]]) -> None:
        self._stall = (nth, meanwhile)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def put(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        await self._written(key, lambda: self.inner.put(key, value, ttl=ttl))

    async def compare_and_set(self, key: str, expected: bytes | None, new: bytes) -> bool:
        return bool(await self._written(key, lambda: self.inner.compare_and_set(key, expected, new)))

    async def _written(self, key: str, write: Callable[[], Awaitable[object]]) -> object:
        if key != self.lease_key:
            return await write()
        if self._stall is not None:
            nth, meanwhile = self._stall
            self._stall = (nth - 1, meanwhile) if nth > 1 else None
            if nth == 1:
                await meanwhile()
                self.stalled = True
        result = await write()
        if self.lose_answer:
            self.lose_answer = False
            raise TimeoutError("the store applied the lease write; its answer was lost")
        return result


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("skew", ["ahead", "behind"])
@pytest.mark.parametrize("stalled", ["renewal", "retried-renewal"])
async def test_a_renewal_landing_after_a_takeover_on_clocks_that_disagree_leaves_one_holder(
    prism_env: PrismEnv, kind: Kind, skew: str, stalled: str
) -> None:
    """Two relays, each on its own clock (r2's half a lease ahead of r1's, or behind), and a
    store slower than the lease: r1's renewal reaches the store only after its lease ran out by
    r2's clock and r2 took it over. The renewal must then fail, never replace r2's lease: two
    holders would publish side by side. The renewal stalled is r1's first write of the lease,
    or the one it retries after a renewal whose answer was lost (the store applied it, r1
    never heard, so the lease it holds in memory is older than the stored one)."""
    r1_clock = ManualClock(1_000.0)
    async with rigged(prism_env, prism_env.ns, kind, clock=r1_clock) as r:
        ttl = r.config.lease_ttl
        r2_clock = ManualClock(r1_clock() + (ttl if skew == "ahead" else -ttl) / 2)
        store_kv, published = prism_env.driver("store").keyvalue(), list[str]()
        slow = SlowLeaseStore(store_kv, r.config.lease)
        r1 = r.relay("r1", sink=LeaseChecked(r, "r1", r1_clock, published), kv=slow, clock=r1_clock)
        r2 = r.relay("r2", sink=LeaseChecked(r, "r2", r2_clock, published), clock=r2_clock)
        await commit_all(r, mixed_events(2))
        assert await r1.run_once() == 2
        await commit_all(r, mixed_events(1, start=2))
        for clock in (r1_clock, r2_clock):
            clock.advance(ttl * 0.3)
        slow.lose_answer = True
        with pytest.raises(TimeoutError):
            await r1.run_once()  # its renewal was applied; r1 did not hear of it
        stored_expiry = json.loads(await store_kv.get(r.config.lease) or b"{}")["expires_at"]
        took_over: list[int] = []

        async def takeover() -> None:
            # the store stalls until r2's clock is past the stored expiry
            for clock in (r1_clock, r2_clock):
                clock.advance(stored_expiry - r2_clock() + ttl * 0.1)
            took_over.append(await r2.run_once())

        slow.stall(1 if stalled == "renewal" else 2, takeover)
        with suppress(LeaseLost):
            await r1.run_once()
        assert slow.stalled, f"r1's {stalled} never reached the store"
        assert took_over == [1], f"r2 did not take the lease over meanwhile (published {took_over})"
        raw = await store_kv.get(r.config.lease)
        lease = json.loads(raw) if raw is not None else {}
        assert (lease.get("holder"), lease.get("epoch")) == ("r2", 2), (
            f"r1's {stalled}, landing after r2 took the lease over (r2's clock {skew}), replaced r2's lease with "
            f"{lease}: both relays hold it"
        )
        assert published[2:] == ["r2"], f"after r2 took the lease over, these relays published: {published[2:]}"
        assert not r1.holds_lease, "r1 still believes it holds the lease r2 took over"
        await commit_all(r, mixed_events(2, start=3))
        with suppress(LeaseLost):
            assert await r1.run_once() == 0, "r1 published after r2 took its lease over"
        assert await drain(r2) == 2, "r2, the lease's holder, did not publish the new events"
        dedup = await check_delivered(r, await r.consumer.collect({s.event_id for s in r.ledger.committed}))
        assert dedup.duplicates == 0, f"{dedup.duplicates} events published twice by two lease holders"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("driven", ["run", "lifecycle"])
async def test_a_relay_stopped_gracefully_hands_its_lease_to_another_relay_at_once(
    prism_env: PrismEnv, kind: Kind, driven: str
) -> None:
    """A graceful stop gives the lease back: a relay of another id publishes at its first poll.
    The clock never moves, so a lease kept would never run out. (A relay restarted under the
    same id takes its own lease back at once, so only another id sees a lease kept.)"""
    clock = ManualClock()
    async with rigged(prism_env, prism_env.ns, kind, clock=clock) as r:
        published: list[str] = []
        first = r.relay("r1", sink=LeaseChecked(r, "r1", clock, published), clock=clock)
        await commit_all(r, mixed_events(2))
        if driven == "run":
            stopping = asyncio.Event()
            task = asyncio.create_task(first.run(stopping))
            assert await settled(first), "r1 did not publish the outbox"
            await stop(task, stopping)
        else:
            await first.start()
            assert await settled(first), "r1 did not publish the outbox"
            report = await first.stop()
            assert not report.forced, report
        await commit_all(r, mixed_events(2, start=2))
        second = r.relay("r2", sink=LeaseChecked(r, "r2", clock, published), clock=clock)
        assert await second.run_once() == 2, (
            f"r2 published nothing at its first poll: r1 kept its lease after a graceful stop ({driven}), and "
            "another relay must wait out its TTL"
        )
        assert not first.holds_lease, "r1 believes it still holds the lease after its graceful stop"
        assert published == ["r1", "r1", "r2", "r2"], published
        await check_delivered(r, await r.consumer.collect({s.event_id for s in r.ledger.committed}))


class TakenOverDuring:
    """A sink that, during its ``at``-th publish, stalls past the relay's lease while a
    successor takes the lease over and publishes everything."""

    def __init__(self, r: OutboxHarness, clock: ManualClock, successor: OutboxRelay, at: int) -> None:
        self.r, self.clock, self.successor, self.at = r, clock, successor, at
        self.calls, self.successor_published = 0, 0

    async def publish(self, message: Message) -> None:
        self.calls += 1
        if self.calls == self.at:
            self.clock.advance(self.r.config.lease_ttl * 1.1)
            self.successor_published = await drain(self.successor)
        await self.r.consumer.sink.publish(message)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_relay_whose_lease_was_taken_over_cannot_move_the_offset(prism_env: PrismEnv, kind: Kind) -> None:
    clock = ManualClock()
    async with rigged(prism_env, prism_env.ns, kind, batch_size=10, clock=clock) as r:
        await commit_all(r, mixed_events(8))
        successor = r.relay("r2", clock=clock)
        stalling = TakenOverDuring(r, clock, successor, at=3)
        stale = r.relay("r1", sink=stalling, clock=clock)
        with suppress(LeaseLost):
            await stale.run_once()  # its commit after the stall must be refused by the fence
        assert stalling.successor_published == 8, "the successor did not publish the outbox"
        assert await successor.committed() == 8, (
            f"the relay offset is {await successor.committed()} after the successor committed 8: "
            "a relay whose lease was taken over moved it back"
        )
        assert await drain(successor) == 0, "events the successor had published were due again"


@pytest.mark.parametrize("kind", KINDS)
async def test_a_routed_destination_sends_each_event_to_the_topic_of_its_type_and_aggregate(
    prism_env: PrismEnv, kind: Kind
) -> None:
    """RFC-009's topic pattern: a destination naming ``{event_type}`` and ``{aggregate_id}``
    sends each event to the topic its own type and aggregate make, and only there."""
    async with rigged(prism_env, prism_env.ns, kind) as r:
        driver = r.consumer.driver
        pattern = prism_env.ns.name("routed") + "-{event_type}-{aggregate_id}"  # names stay in the namespace
        routes = {(t, a): pattern.format(event_type=t, aggregate_id=a) for t in ("created", "shipped") for a in "xy"}
        readers = {
            route: SinkReader(lambda: driver, kind, topic, r.consumer.ordering, quiet=TAIL_WAIT)
            for route, topic in routes.items()
        }
        for reader in readers.values():
            await reader.open()  # pub/sub: subscribed before anything is published
        try:
            sent: dict[str, tuple[str, str]] = {}
            for n, route in enumerate([*routes, *reversed(routes)]):
                async with r.outbox.transaction() as tx:
                    event_type, aggregate = route
                    sent[await tx.publish(aggregate, event_type, f"event-{n}".encode())] = route
            relay = r.relay("r1", sink=sink_of(driver, kind, pattern))
            assert await drain(relay) == len(sent)
            # Until every event arrived somewhere (or the stall bound ran out), then all each topic holds.
            arrived: dict[tuple[str, str], set[str]] = {route: set() for route in routes}

            def everywhere() -> bool:
                return set(sent) <= set().union(*arrived.values())

            async def receive() -> int:
                for route, reader in readers.items():
                    arrived[route].update(m.headers[HEADER_EVENT_ID] for m in await reader.receive(TAIL_WAIT))
                return sum(map(len, arrived.values()))

            if not everywhere():
                with suppress(patience.Unsettled):  # running out falls through to the asserts, strays first
                    await patience.until(
                        receive,
                        lambda _: everywhere(),
                        what="outbox: every routed event at some topic",
                        stall="stall",
                        ceiling="stall",  # a plain bound: waited for at most, progress or not
                        every=0.0,  # each receive waits TAIL_WAIT itself
                    )
            for route, reader in readers.items():
                messages = await reader.until_now(clocks.monotonic() + SETTLE)
                arrived[route].update(m.headers[HEADER_EVENT_ID] for m in messages)
        finally:
            for reader in readers.values():
                await reader.close()
        for route, topic in routes.items():
            want = {event_id for event_id, to in sent.items() if to == route}
            strays = {event_id: sent.get(event_id) for event_id in arrived[route] - want}
            assert not strays, f"topic {topic} got events routed elsewhere (type, aggregate): {strays}"
            assert want <= arrived[route], f"{len(want - arrived[route])} events of {route} never reached {topic}"


EVENT_LIMIT = 64  # bytes: max_payload of the refusal test
# Every header the outbox writes itself, named here rather than taken from the implementation's set
OWN_HEADERS = (HEADER_EVENT_ID, HEADER_AGGREGATE_ID, HEADER_EVENT_TYPE, HEADER_SEQUENCE, HEADER_CREATED_AT)


async def test_a_refused_event_is_a_typed_error_and_its_transaction_writes_nothing(prism_env: PrismEnv) -> None:
    """Bad input to publish: an event over max_payload, a header the outbox owns, an empty
    aggregate or type. Each raises its own error, and the block around it commits nothing, not
    even the business row or the events staged before the refused one."""
    async with rigged(prism_env, prism_env.ns, "log", max_payload=EVENT_LIMIT) as r:
        await r.transaction([("a", b"x" * EVENT_LIMIT)])  # exactly at the limit: accepted
        refusals: list[tuple[type[Exception], tuple[str, str, bytes, dict[str, str] | None]]] = [
            (PayloadTooLarge, ("a", "Changed", b"x" * (EVENT_LIMIT + 1), None)),
            (ValueError, ("", "Changed", b"ok", None)),
            (ValueError, ("a", "", b"ok", None)),
        ]
        refusals += [(ReservedHeader, ("a", "Changed", b"ok", {name: "forged"})) for name in OWN_HEADERS]
        kv = prism_env.driver("store").keyvalue()
        for n, (error, (aggregate, event_type, payload, headers)) in enumerate(refusals):
            row = r.ns.name(f"refused-{n}")
            with pytest.raises(error):  # noqa: PT012  (the error must leave the whole block)
                async with r.outbox.transaction() as tx:
                    await tx.put(row, b"business")
                    await tx.publish("b", "Changed", b"staged before the refusal")
                    await tx.publish(aggregate, event_type, payload, headers)
            assert await kv.get(row) is None, (
                f"the business row of a transaction refused with {error.__name__} was written"
            )
        records = await prism_env.driver("store").log().read(r.config.log, 0, limit=100)
        assert [rec.message.headers[HEADER_EVENT_ID] for rec in records] == [s.event_id for s in r.ledger.committed], (
            "the outbox holds other events than the one accepted: a refused transaction left some behind"
        )


@pytest.mark.parametrize("kind", KINDS)
async def test_the_deduplicator_drops_redeliveries_within_its_capacity_and_forgets_the_oldest(
    prism_env: PrismEnv, kind: Kind
) -> None:
    capacity = 3
    async with rigged(prism_env, prism_env.ns, kind) as r:
        await commit_all(r, mixed_events(6))
        await drain(r.relay("r1"))
        delivered = await r.consumer.collect({s.event_id for s in r.ledger.committed})
        dedup = Deduplicator(capacity)
        unique = [m for m in delivered if dedup.first_time(m)]
        assert len(unique) == len(r.ledger.committed), "the deduplicator dropped an event it had never seen"
        newest, oldest = unique[-capacity:], unique[0]
        assert not any(dedup.first_time(m) for m in newest), (
            f"a redelivery of one of the last {capacity} events passed a deduplicator of capacity {capacity}"
        )
        assert dedup.first_time(oldest), f"the oldest event was remembered beyond a capacity of {capacity}"
        assert len(dedup) == capacity, f"the deduplicator holds {len(dedup)} ids, more than its capacity"
