"""Acceptance suite of change data capture (RFC-009 §5), over every (change-feed source x sink).

``source`` is a backend with a change feed (PostgreSQL logical decoding, the SQLite change
table, memstore's feed) where writers commit and roll back transactions; ``sink`` is where the
connector publishes, and every test runs once per messaging interface the sink provides.

Judged by replica convergence plus the CDC checker (:mod:`._cdc_checker`): every committed
change delivered, none of a rolled-back transaction, transactions whole, each key in commit
order, duplicates only as identical redeliveries (at-least-once), and the replica built from
the delivered events equal to the source. This holds with the connector killed mid-stream,
with an initial snapshot taken while writers write, and with the source server killed. When
the source loses the capture's position (a failover), the connector raises ``CaptureLost``,
or, configured to, re-snapshots in a new epoch and the replica converges.

Pub/sub is at-most-once fan-out: the consumer subscribes before the connector publishes.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import pytest

import prism_testkit.simulation.clock as clocks
from prism_testkit import Capability, Driver, Message, Ordering, PrismEnv, Slot, patience, prism_suite
from prism_testkit.errors import CaptureLost, CaptureNotFound, TransactionAborted
from prism_testkit.interfaces import CaptureLoss
from prism_testkit.isolation import Namespace
from prism_testkit.patterns.cdc import (
    CdcConfig,
    CdcConnector,
    EventSink,
    LogEventSink,
    PubSubEventSink,
    QueueEventSink,
    decode,
)
from prism_testkit.provision.cluster import FailoverCluster

from ._cdc_checker import Ledger, Write, check, value_of
from ._doubles import DyingSink, Killed, Rollback
from ._helpers import in_background
from ._sink_reader import Kind, SinkReader

pytestmark = prism_suite(
    "cdc",
    source=Slot.needs("changefeed", "keyvalue.scan", "transactions"),
    sink=Slot.one_of("queue", "log", "pubsub"),
)

KINDS: list[Kind] = ["queue", "log", "pubsub"]
TABLES = ["users", "orders"]
WRITERS = 3
TRANSACTIONS = 12  # per writer
TAIL_WAIT = 0.1  # where no fence can end a read: how long a wait must bring nothing
SETTLE = 10.0  # upper bound for the sink to hand over what it holds (never reached when healthy)
LATE = 30.0  # seconds between a commit and its publication, as the connector's clock sees it


# --- consumer ------------------------------------------------------------------------------


class Consumer:
    """Reads every table's topic of the sink, as a downstream consumer would."""

    def __init__(self, prism_env: PrismEnv, kind: Kind, topic_prefix: str) -> None:
        driver = prism_env.driver("sink")
        if not driver.supports(Capability(kind)):
            pytest.skip(f"{driver.name} does not provide {kind}")
        self.kind, self._env = kind, prism_env
        ordering = prism_env.spec("sink").properties.ordering
        self.ordered = ordering is not Ordering.NONE
        self.topics = [f"{topic_prefix}.{table}" for table in TABLES]
        self.received: dict[str, list[Message]] = {t: [] for t in self.topics}
        self.readers = {t: SinkReader(lambda: self.driver, kind, t, ordering, quiet=TAIL_WAIT) for t in self.topics}

    @property
    def driver(self) -> Driver:
        # Looked up each time: when source and sink share a backend, restarting the source
        # replaces the sink's driver too, and the old one's connections are closed.
        return self._env.driver("sink")

    def sink(self) -> EventSink:
        if self.kind == "queue":
            return QueueEventSink(self.driver.queue())
        if self.kind == "log":
            return LogEventSink(self.driver.log())
        return PubSubEventSink(self.driver.pubsub())

    async def open(self) -> None:
        for reader in self.readers.values():
            await reader.open()

    async def close(self) -> None:
        for reader in self.readers.values():
            await reader.close()

    async def resubscribe(self) -> None:
        """A restart of the sink's own backend (it also is the source) ends its subscriptions:
        subscribe again on the new driver. Pub/sub keeps nothing for a subscriber that is
        gone, so the caller collects what was delivered before the restart."""
        if self.kind != "pubsub":
            return
        for reader in self.readers.values():
            with suppress(Exception):  # the old subscription may have died with its server
                await reader.close()
        await self.open()

    async def collect(self) -> list[Message]:
        """Everything delivered so far, topic by topic (each topic in delivery order)."""
        for topic, reader in self.readers.items():
            self.received[topic].extend(await reader.until_now(clocks.monotonic() + SETTLE))
        return [m for topic in self.topics for m in self.received[topic]]


# --- writers -------------------------------------------------------------------------------


@dataclass
class CdcHarness:
    """Writers on the source (each transaction recorded in the ledger), connectors over its
    change feed, and the consumer of their topics, which judges what was delivered."""

    prism_env: PrismEnv
    ns: Namespace
    consumer: Consumer
    config: CdcConfig
    ledger: Ledger = field(default_factory=Ledger)
    _tags: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def prefix(self) -> str:
        return self.config.prefix

    def key(self, writer: int, table: str, row: int) -> str:
        return f"{self.prefix}{table}/w{writer}-{row}"

    def connector(self, sink: EventSink | None = None, source: Driver | None = None) -> CdcConnector:
        source = source or self.prism_env.driver("source")
        return CdcConnector(source.changefeed(), source.keyvalue(), sink or self.consumer.sink(), self.config)

    async def transaction(self, writes: list[Write], *, commit: bool = True, source: Driver | None = None) -> None:
        """One transaction: puts get the unique value ``<tag>|<key>``; the ledger records it."""
        tag = f"t{next(self._tags)}"
        tx = (source or self.prism_env.driver("source")).transactions()
        try:
            async with tx.transaction() as t:
                for key, value in writes:
                    if value is None:
                        await t.delete(key)
                    else:
                        await t.put(key, value_of(tag, key))
                if not commit:
                    raise Rollback
        except (Rollback, TransactionAborted):
            self.ledger.rolled_back.add(tag)
        else:
            self.ledger.commit(tag, writes)

    async def writer(self, writer: int, transactions: int, *, seed: int, source: Driver | None = None) -> None:
        """Single writer of its own keys (so each key's commit order is known): puts, updates,
        deletes, and one transaction in four rolled back."""
        rnd = random.Random(seed)
        live: set[str] = set()
        for _ in range(transactions):
            writes: list[Write] = []
            for _ in range(rnd.randint(1, 3)):
                key = self.key(writer, rnd.choice(TABLES), rnd.randrange(6))
                if key not in (k for k, _ in writes):
                    writes.append((key, b"put"))
            if live and rnd.random() < 0.3:
                gone = rnd.choice(sorted(live - {k for k, _ in writes} or live))
                if gone not in (k for k, _ in writes):
                    writes.append((gone, None))
            commit = rnd.random() >= 0.25
            await self.transaction(writes, commit=commit, source=source)
            if commit:
                for key, value in writes:
                    (live.add if value is not None else live.discard)(key)
            await asyncio.sleep(0)

    async def writers(self, *, seed: int = 0, source: Driver | None = None) -> None:
        await asyncio.gather(*(self.writer(w, TRANSACTIONS, seed=seed + w, source=source) for w in range(WRITERS)))

    async def source_state(self, source: Driver | None = None) -> dict[str, bytes]:
        kv = (source or self.prism_env.driver("source")).keyvalue()
        state = {}
        async for key in kv.scan(self.prefix):
            value = await kv.get(key)
            if value is not None and not key.endswith(".snapshot"):
                state[key] = value
        return state

    async def judge(self, source: Driver | None = None) -> None:
        delivered = await self.consumer.collect()
        verdict = check(self.ledger, delivered, await self.source_state(source), ordered=self.consumer.ordered)
        self.prism_env.record_verdict(verdict)
        verdict.assert_valid()


@asynccontextmanager
async def rigged(prism_env: PrismEnv, kind: Kind, **config: Any) -> AsyncIterator[CdcHarness]:
    ns = prism_env.ns
    topic_prefix = ns.name("cdc")
    settings: dict[str, Any] = {
        "capture": ns.name("capture"),
        "prefix": ns.name("data/"),
        "topic_prefix": topic_prefix,
        "state_key": ns.name("capture.snapshot"),
        "poll_interval": patience.handed("poll"),
        "batch_size": 5,
        "snapshot": "never",
    }
    consumer = Consumer(prism_env, kind, topic_prefix)
    await consumer.open()
    try:
        yield CdcHarness(prism_env, ns, consumer, CdcConfig(**{**settings, **config}))
    finally:
        await consumer.close()


def running(connector: CdcConnector) -> AbstractAsyncContextManager[asyncio.Task[None]]:
    """The connector's run loop in a task, stopped (or cancelled, or killed) when the block ends."""
    return in_background(connector, ending=(asyncio.CancelledError, Killed))


# --- tests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_every_committed_change_arrives_whole_and_in_order(prism_env: PrismEnv, kind: Kind) -> None:
    async with rigged(prism_env, kind) as rig:
        connector = rig.connector()
        await connector.start()
        async with running(connector):
            await rig.writers()
        await connector.drain()
        await rig.judge()
        assert rig.ledger.rolled_back, "the workload must roll some transactions back"
        assert connector.metrics.events_published >= sum(len(w) for w in rig.ledger.committed.values())
        assert connector.metrics.samples()["prism_cdc_replication_lag_seconds"] >= 0


@pytest.mark.parametrize("kind", KINDS)
async def test_a_connector_killed_mid_stream_loses_nothing(prism_env: PrismEnv, kind: Kind) -> None:
    async with rigged(prism_env, kind) as rig:
        first = rig.connector()
        await first.start()
        await rig.writers(seed=10)
        dying = rig.connector(DyingSink(rig.consumer.sink(), lives=7))
        with pytest.raises(Killed):
            await dying.drain()
        # restarted (a new process): resumes from the confirmed position, republishing the rest
        await rig.connector().drain()
        await rig.judge()


@pytest.mark.parametrize("kind", KINDS)
async def test_snapshot_hands_over_to_streaming_while_writers_write(prism_env: PrismEnv, kind: Kind) -> None:
    async with rigged(prism_env, kind, snapshot="initial", snapshot_chunk_size=4) as rig:
        await rig.writer(WRITERS, 10, seed=99)  # rows that exist before the capture
        rig.ledger.seeded = {v for v in (await rig.source_state()).values()}
        rig.ledger.committed.clear()
        rig.ledger.key_order.clear()
        connector = rig.connector()
        await connector.start()
        async with running(connector):
            await rig.writers(seed=20)
        await connector.drain()
        assert connector.snapshot_done
        assert connector.metrics.snapshot_rows > 0, "the snapshot published no existing row"
        await rig.judge()


@pytest.mark.parametrize("kind", KINDS)
async def test_the_source_server_killed_and_restarted_loses_nothing(prism_env: PrismEnv, kind: Kind) -> None:
    """With process control the server is SIGKILLed; embedded sources are closed and reopened."""
    async with rigged(prism_env, kind) as rig:
        connector = rig.connector()
        await connector.start()
        await rig.writers(seed=30)
        await connector.run_once()  # part of the stream published and confirmed
        shared = prism_env.combination["sink"] == prism_env.combination["source"]
        if shared:
            await rig.consumer.collect()
        source = await prism_env.restart("source")
        if shared:
            await rig.consumer.resubscribe()
        await rig.writers(seed=40, source=source)
        await rig.connector(source=source).drain()
        await rig.judge(source)


@pytest.mark.parametrize("kind", KINDS[:1])
async def test_an_idle_capture_confirms_heartbeats_and_leaves_nothing_behind(prism_env: PrismEnv, kind: Kind) -> None:
    async with rigged(prism_env, kind, heartbeat_interval=0.05) as rig:
        connector = rig.connector()
        await connector.start()
        source = prism_env.driver("source")
        left = (await prism_env.leftovers()).get(source.name, [])
        assert f"capture:{rig.config.capture}" in left, f"leftovers do not list the capture: {left}"
        await source.keyvalue().put(rig.ns.name("not-captured"), b"x")  # traffic elsewhere
        for _ in range(20):
            await connector.run_once()
            if connector.metrics.heartbeats and connector.metrics.position:
                break
            await asyncio.sleep(0.02)
        assert connector.metrics.heartbeats >= 1
        assert connector.metrics.position > 0, "an idle capture never confirmed its heartbeat"
        await connector.drop()
        await source.keyvalue().delete(rig.ns.name("not-captured"))
        assert await prism_env.leftovers() == {}, "a dropped capture left its slot or rows behind"


@pytest.mark.parametrize("kind", KINDS[:1])
async def test_each_change_carries_its_op_code_and_the_row_before_and_after(prism_env: PrismEnv, kind: Kind) -> None:
    async with rigged(prism_env, kind) as rig:
        connector = rig.connector()
        await connector.start()
        key = rig.key(0, "users", 0)
        for value in (b"put", b"put", None):  # insert, update, delete of one row
            await rig.transaction([(key, value)])
        await connector.drain()
        events = sorted((decode(m) for m in await rig.consumer.collect()), key=lambda e: e.order)
        got = [(e.op, e.before, e.after) for e in events]
        first, second = value_of("t0", key), value_of("t1", key)
        want = [("c", None, first), ("u", first, second), ("d", second, None)]
        assert got == want, (
            f"an insert, an update and a delete of one row were published as {got}, not {want}: each event must "
            "carry its op code and the row before it (updates, deletes) and after it (inserts, updates)"
        )


@pytest.mark.parametrize("kind", KINDS[:1])
async def test_only_the_configured_tables_and_operations_are_published(prism_env: PrismEnv, kind: Kind) -> None:
    async with rigged(prism_env, kind, tables=["users"], operations=["INSERT", "DELETE"]) as rig:
        connector = rig.connector()
        await connector.start()
        user, order = rig.key(0, "users", 0), rig.key(0, "orders", 0)
        for value in (b"put", b"put", None):  # insert, update, delete of each row
            await rig.transaction([(user, value), (order, value)])
        await connector.drain()
        got = sorted((e.op, e.table, e.key, e.total) for e in map(decode, await rig.consumer.collect()))
        want = [("c", "users", user, 1), ("d", "users", user, 1)]
        assert got == want, (
            f"with tables=['users'] and operations INSERT and DELETE the connector published {got}, not {want}: "
            "changes of other tables or operations leaked, or a transaction's total counts events it did not publish"
        )


@pytest.mark.parametrize("kind", KINDS[:1])
async def test_replication_lag_is_the_time_from_commit_to_publish(prism_env: PrismEnv, kind: Kind) -> None:
    async with rigged(prism_env, kind) as rig:
        connector = rig.connector()
        connector.clock = lambda: clocks.wall() + LATE  # the connector publishes LATE seconds after the commit
        await connector.start()
        await rig.transaction([(rig.key(0, "users", 0), b"put")])
        await connector.drain()
        lag = connector.metrics.samples()["prism_cdc_replication_lag_seconds"]
        assert LATE - 1 <= lag <= LATE + 10, (
            f"a change published {LATE} s after its commit reports a replication lag of {lag} s"
        )


@pytest.mark.parametrize("kind", KINDS[:1])
async def test_without_old_values_events_carry_no_before_image(prism_env: PrismEnv, kind: Kind) -> None:
    async with rigged(prism_env, kind, include_old_value=False) as rig:
        connector = rig.connector()
        await connector.start()
        key = rig.key(0, "users", 0)
        for value in (b"put", b"put", None):  # insert, update, delete of one row
            await rig.transaction([(key, value)])
        await connector.drain()
        events = sorted((decode(m) for m in await rig.consumer.collect()), key=lambda e: e.order)
        got = [(e.op, e.before, e.after) for e in events]
        want = [("c", None, value_of("t0", key)), ("u", None, value_of("t1", key)), ("d", None, None)]
        assert got == want, f"with include_old_value false the connector published {got}, not {want}"


@pytest.mark.parametrize("kind", KINDS[:1])
async def test_the_snapshot_publishes_each_existing_row_once_across_chunks(prism_env: PrismEnv, kind: Kind) -> None:
    async with rigged(prism_env, kind, snapshot="initial", snapshot_chunk_size=3) as rig:
        rows = [rig.key(0, TABLES[n % 2], n) for n in range(8)]  # three chunks: 3 + 3 + 2
        await rig.transaction([(key, b"put") for key in rows])
        connector = rig.connector()
        await connector.start()
        await connector.drain()
        snapshotted = sorted(e.key for e in map(decode, await rig.consumer.collect()) if e.snapshot)
        assert snapshotted == sorted(rows), (
            f"the snapshot in chunks of 3 published {snapshotted} for the 8 existing rows {sorted(rows)}: "
            "each row must come exactly once"
        )
        assert connector.metrics.snapshot_rows == len(rows)


class WriteAfterRead:
    """The source's key-value, except that right after the snapshot reads ``row`` a writer
    commits a newer value of it: inside the chunk's watermark window."""

    def __init__(self, inner: Any, rig: CdcHarness, row: str) -> None:
        self.inner, self.rig, self.row = inner, rig, row
        self.written = False

    async def get(self, key: str) -> bytes | None:
        value: bytes | None = await self.inner.get(key)
        if key == self.row and not self.written:
            self.written = True
            await self.rig.transaction([(key, b"put")])
        return value

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.mark.parametrize("kind", KINDS[:1])
async def test_a_row_changed_inside_the_snapshot_window_is_not_published_stale(prism_env: PrismEnv, kind: Kind) -> None:
    async with rigged(prism_env, kind, snapshot="initial", snapshot_chunk_size=4) as rig:
        rows = [rig.key(0, "users", n) for n in range(3)]
        await rig.transaction([(key, b"put") for key in rows])  # rows that exist before the capture
        rig.ledger.seeded = set((await rig.source_state()).values())
        rig.ledger.committed.clear()
        rig.ledger.key_order.clear()
        source = prism_env.driver("source")
        kv = WriteAfterRead(source.keyvalue(), rig, rows[1])
        connector = CdcConnector(source.changefeed(), kv, rig.consumer.sink(), rig.config)
        await connector.start()
        await connector.drain()
        assert kv.written, "the snapshot never read the row the writer changes"
        await rig.judge()  # the row's snapshot value, read before the change, must not win over it


def capture_loss(prism_env: PrismEnv) -> CaptureLoss:
    feed = prism_env.driver("source").changefeed()
    if not isinstance(feed, CaptureLoss):
        pytest.skip(f"{prism_env.spec('source').name}: a capture's position is stored with its data")
    return feed


@pytest.mark.parametrize("kind", KINDS[:1])
async def test_a_lost_capture_raises_capture_lost_and_is_never_restarted_from_now(
    prism_env: PrismEnv, kind: Kind
) -> None:
    """The default: a connector whose capture lost its position (the slot a promotion leaves
    behind) stops with ``CaptureLost``, and so does every connector started after it."""
    async with rigged(prism_env, kind) as rig:
        feed = capture_loss(prism_env)
        connector = rig.connector()
        await connector.start()
        await rig.writers(seed=50)
        await connector.run_once()  # part of the stream published and confirmed
        await feed.lose_capture(rig.config.capture)
        await rig.writers(seed=51)
        with pytest.raises(CaptureLost):
            await connector.drain()
        with pytest.raises(CaptureLost):
            await rig.connector().drain()  # restarted: create must not make the slot again from now
        assert connector.metrics.captures_lost == 1


@pytest.mark.parametrize("kind", KINDS)
async def test_a_lost_capture_is_resnapshotted_and_the_replica_converges(prism_env: PrismEnv, kind: Kind) -> None:
    """With ``on_capture_lost="resnapshot"``: transactions committed in the gap (rows put and
    rows of the earlier stream deleted) reach the replica only as the rows they left, through
    a truncate and a watermark snapshot in a new epoch, while writers keep writing; every
    transaction committed before the loss or after the new capture arrives as a change."""
    async with rigged(prism_env, kind, on_capture_lost="resnapshot", snapshot_chunk_size=4) as rig:
        feed = capture_loss(prism_env)
        connector, straggler = rig.connector(), rig.connector()
        await connector.start()
        await straggler.start()  # a second process, still in epoch 0 when the first moves on
        await rig.writers(seed=60)
        await connector.drain()
        before_loss = set(rig.ledger.committed)
        await feed.lose_capture(rig.config.capture)
        await rig.writers(seed=61)
        streamed = await rig.source_state()
        await rig.transaction([(key, None) for key in sorted(streamed)[::2]])  # rows the replica holds
        rig.ledger.superseded(set(rig.ledger.committed) - before_loss)
        await connector.run_once()  # meets the loss: a new capture in epoch 1
        assert connector.metrics.captures_lost == 1
        with pytest.raises(CaptureNotFound):  # never consumes epoch 1's changes as epoch 0's
            await straggler.run_once()
        async with running(connector):
            await rig.writers(seed=62)
        await connector.drain()
        assert connector.snapshot_done
        assert connector.epoch == 1
        assert connector.metrics.snapshot_rows > 0, "the re-snapshot published no row"
        await rig.judge()


@pytest.mark.parametrize("kind", KINDS[:2])
async def test_across_a_failover_the_connector_raises_or_resnapshots_and_converges(
    prism_env: PrismEnv, kind: Kind
) -> None:
    """A real failover of the source (``postgres-ha``): transactions committed after the last
    confirm, before and after the promotion, are beyond the lost slot. A connector left at the
    default raises ``CaptureLost``; one configured to re-snapshot converges the replica."""
    name = prism_env.combination["source"]
    if not isinstance(prism_env.control("source"), FailoverCluster):
        pytest.skip(f"{name}: no failover (not a primary with replicas the harness started)")
    async with rigged(prism_env, kind, on_capture_lost="resnapshot", snapshot_chunk_size=4) as rig:
        connector = rig.connector()
        await connector.start()
        await rig.writers(seed=70)
        await connector.drain()
        confirmed = set(rig.ledger.committed)
        await rig.writers(seed=71)  # committed, not yet read when the primary goes
        shared = prism_env.combination["sink"] == prism_env.combination["source"]
        if shared:
            await rig.consumer.collect()
        source = await prism_env.failover("source")
        if shared:
            await rig.consumer.resubscribe()
        await rig.writers(seed=72, source=source)  # on the new primary, before any connector runs
        rig.ledger.superseded(set(rig.ledger.committed) - confirmed)
        raising = rig.config.model_copy(update={"on_capture_lost": "raise"})
        default = CdcConnector(source.changefeed(), source.keyvalue(), rig.consumer.sink(), raising)
        with pytest.raises(CaptureLost):
            await default.drain()
        resnapshotting = rig.connector(source=source)
        await resnapshotting.start()  # meets the loss: a new capture in epoch 1, before the writers
        async with running(resnapshotting):
            await rig.writers(seed=73, source=source)
        await resnapshotting.drain()
        assert resnapshotting.epoch == 1
        await rig.judge(source)
