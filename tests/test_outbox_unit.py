"""Unit tests of patterns.outbox over memstore and sqlite (both have transactions, kv CAS and a log)."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from pydantic import ValidationError

from prism_testkit.backends.memstore import open_memstore
from prism_testkit.driver import Driver
from prism_testkit.errors import ConfigurationError, ConnectionLost, PayloadTooLarge, TransactionAborted
from prism_testkit.interfaces import ChangeFeed, KeyValue, Log, Message, Queue, Record, Transactions
from prism_testkit.patterns.claim_check import ClaimCheck, ClaimCheckConfig, ClaimCheckQueue
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
    OutboxPublisher,
    OutboxRecordError,
    OutboxRelay,
    PubSubSink,
    QueueSink,
    ReservedHeader,
    decode_record,
    encode_record,
)
from prism_testkit.patterns.outbox_cdc import OutboxCdcPublisher
from prism_testkit.simulation.clock import ManualClock
from prism_testkit.suites._helpers import ReadPathTransactions
from tests._scenarios import Runner as ScenarioRunner

T = TypeVar("T")
LOG = "t-outbox"

Hook = Callable[[Message, int], Awaitable[None]]


# --- fixtures and helpers ------------------------------------------------------------------


@dataclass
class Env:
    transactions: Transactions
    log: Log
    kv: KeyValue
    queue: Queue
    feed: ChangeFeed


Runner = ScenarioRunner[Env]


@pytest.fixture
def scenario_subject() -> Callable[[Driver], Env]:
    return lambda d: Env(d.transactions(), d.log(), d.keyvalue(), d.queue(), d.changefeed())


@dataclass
class History:
    """Everything every sink saw, in publish order, tagged with the publishing relay."""

    entries: list[tuple[str, Message]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0

    def ids(self) -> list[str]:
        return [m.headers[HEADER_EVENT_ID] for _, m in self.entries]

    def relays(self) -> list[str]:
        return [r for r, _ in self.entries]

    def deduplicated(self) -> list[Message]:
        dedup = Deduplicator()
        return [m for _, m in self.entries if dedup.first_time(m)]


@dataclass
class RecordingRelaySink:
    """An outbox relay's sink (``publish(message)``) that records into a :class:`History` shared
    by the relays, tagged with its relay's id, with hooks around each publish."""

    history: History
    relay_id: str
    before: Hook | None = None  # runs before the message counts as published
    after: Hook | None = None  # runs after it was published (raising = published but unacked)
    count: int = 0

    async def publish(self, message: Message) -> None:
        self.count += 1
        if self.before is not None:
            await self.before(message, self.count)
        self.history.in_flight += 1
        self.history.max_in_flight = max(self.history.max_in_flight, self.history.in_flight)
        try:
            await asyncio.sleep(0)  # let a concurrent publisher in, if the lease allowed one
            self.history.entries.append((self.relay_id, message))
        finally:
            self.history.in_flight -= 1
        if self.after is not None:
            await self.after(message, self.count)


def relay(
    env: Env,
    history: History,
    relay_id: str,
    config: OutboxConfig,
    clock: ManualClock | None = None,
    *,
    before: Hook | None = None,
    after: Hook | None = None,
) -> OutboxRelay:
    sink = RecordingRelaySink(history, relay_id, before=before, after=after)
    if clock is None:
        return OutboxRelay(env.log, env.kv, sink, config, relay_id)
    return OutboxRelay(env.log, env.kv, sink, config, relay_id, clock=clock)


async def commit_events(outbox: Outbox, events: list[tuple[str, str]]) -> list[str]:
    """One transaction per (aggregate, event type), each with a business write; the event ids."""
    ids = []
    for n, (aggregate, event_type) in enumerate(events):
        async with outbox.transaction() as tx:
            await tx.put(f"{LOG}-row-{aggregate}", f"{event_type}-{n}".encode())
            ids.append(await tx.publish(aggregate, event_type, f"{aggregate}:{n}".encode()))
    return ids


async def drain(r: OutboxRelay) -> int:
    total = 0
    while published := await r.run_once():
        total += published
    return total


async def wait_until_drained(r: OutboxRelay, polls: int = 2000) -> None:
    for _ in range(polls):  # 10 ms apart: 20 s at most
        if not await r.pending():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{await r.pending()} records still pending after {polls} polls")


def assert_aggregate_order(messages: list[Message]) -> None:
    """Every aggregate's events arrive as sequence 1, 2, 3... (no gap, no reordering)."""
    seen: dict[str, list[int]] = {}
    for m in messages:
        seen.setdefault(m.headers[HEADER_AGGREGATE_ID], []).append(int(m.headers[HEADER_SEQUENCE]))
    for aggregate, sequences in seen.items():
        assert sequences == list(range(1, len(sequences) + 1)), (aggregate, sequences)


def config(**overrides: Any) -> OutboxConfig:
    return OutboxConfig(**{"log": LOG, **overrides})


# --- producing -----------------------------------------------------------------------------


def test_commit_publishes_exactly_the_committed_events(on_backend: Runner) -> None:
    async def scenario(env: Env) -> None:
        clock = ManualClock()
        outbox = Outbox(env.transactions, config(), clock=clock)
        history = History()
        async with outbox.transaction() as tx:
            await tx.put("order-1", b"placed")
            first = await tx.publish("order-1", "OrderPlaced", b"{1}", headers={"trace": "abc"})
            second = await tx.publish("order-1", "OrderPaid", b"{2}")
            assert await tx.get("order-1") == b"placed"
            # Nothing is visible outside before the commit.
            assert await env.log.end_offset(LOG) == 0
            assert await env.kv.get("order-1") is None
        assert await env.kv.get("order-1") == b"placed"
        assert outbox.metrics.events_committed == 2

        r = relay(env, history, "r1", config(), clock)
        assert await r.pending() == 2
        assert await r.run_once() == 2
        assert await r.run_once() == 0  # nothing is published twice by a healthy relay
        assert history.ids() == [first, second]
        m = history.entries[0][1]
        assert m.payload == b"{1}"
        assert m.key == "order-1"
        assert m.headers["trace"] == "abc"
        assert m.headers[HEADER_AGGREGATE_ID] == "order-1"
        assert m.headers[HEADER_EVENT_TYPE] == "OrderPlaced"
        assert float(m.headers[HEADER_CREATED_AT]) == clock.now
        assert [x.headers[HEADER_SEQUENCE] for _, x in history.entries] == ["1", "2"]
        assert await r.pending() == 0
        assert await r.committed() == 2
        assert await env.log.committed(LOG, "outbox-relay") == 2  # informational mirror
        assert r.metrics.events_relayed == 2
        assert r.metrics.offset_commits == 1

    on_backend(scenario)


def test_rollback_publishes_nothing(on_backend: Runner) -> None:
    async def scenario(env: Env) -> None:
        outbox = Outbox(env.transactions, config())

        async def failing_block() -> None:
            async with outbox.transaction() as tx:
                await tx.put("order-1", b"placed")
                await tx.publish("order-1", "OrderPlaced", b"x")
                raise RuntimeError("boom")

        with pytest.raises(RuntimeError, match="boom"):
            await failing_block()
        assert await env.log.end_offset(LOG) == 0
        assert await env.kv.get("order-1") is None
        assert outbox.metrics.transactions_rolled_back == 1
        assert outbox.metrics.events_committed == 0

        history = History()
        r = relay(env, history, "r1", config())
        assert await r.run_once() == 0
        assert history.entries == []
        # The rolled-back event did not use up a sequence number.
        await commit_events(outbox, [("order-1", "OrderPlaced")])
        await drain(r)
        assert [m.headers[HEADER_SEQUENCE] for _, m in history.entries] == ["1"]

    on_backend(scenario)


def test_per_aggregate_order_is_kept(on_backend: Runner) -> None:
    async def scenario(env: Env) -> None:
        rng = random.Random(11)
        events = [(f"agg-{rng.randrange(4)}", f"E{n}") for n in range(30)]
        outbox = Outbox(env.transactions, config())
        ids = await commit_events(outbox, events)
        history = History()
        r = relay(env, history, "r1", config(batch_size=4))
        assert await drain(r) == 30
        assert history.ids() == ids  # log order is commit order
        assert_aggregate_order([m for _, m in history.entries])
        assert r.metrics.batches == 8

    on_backend(scenario)


@pytest.mark.parametrize("numbered_by", ["store", "read"])
def test_concurrent_writers_of_one_aggregate_cannot_share_a_sequence_number(
    on_backend: Runner, numbered_by: str
) -> None:
    """Numbered by the store at commit, both commit in commit order; read and bumped, the
    second to commit aborts. Either way no number is given twice."""

    async def scenario(env: Env) -> None:
        transactions = env.transactions if numbered_by == "store" else ReadPathTransactions(env.transactions)
        outbox = Outbox(transactions, config())

        async def interleaved() -> None:
            async with outbox.transaction() as a:
                await a.publish("agg", "FromA", b"a")
                async with outbox.transaction() as b:  # begins after A, commits before A
                    await b.publish("agg", "FromB", b"b")

        if numbered_by == "store":
            await interleaved()
        else:
            with pytest.raises(TransactionAborted):
                await interleaved()
            await commit_events(outbox, [("agg", "FromA")])  # the application retries A
        records = await env.log.read(LOG, 0)
        assert [(r.message.headers[HEADER_EVENT_TYPE], r.message.headers[HEADER_SEQUENCE]) for r in records] == [
            ("FromB", "1"),
            ("FromA", "2"),
        ]
        assert await env.kv.get(config().sequence_key("agg")) == b"2"

    on_backend(scenario)


def test_out_of_commit_order_transactions_are_never_skipped(on_backend: Runner) -> None:
    async def scenario(env: Env) -> None:
        outbox = Outbox(env.transactions, config())
        history = History()
        r = relay(env, history, "r1", config())
        async with outbox.transaction() as a:  # begins first ...
            id_a = await a.publish("agg-a", "A", b"a")
            async with outbox.transaction() as b:
                id_b = await b.publish("agg-b", "B", b"b")
            # ... B committed first; the relay moves past it while A is still open.
            assert await r.run_once() == 1
            assert await r.committed() == 1
        assert await r.run_once() == 1  # ... and A, committed late, is not skipped
        assert history.ids() == [id_b, id_a]
        assert [rec.message.headers[HEADER_EVENT_ID] for rec in await env.log.read(LOG, 0)] == [id_b, id_a]
        assert await r.pending() == 0

    on_backend(scenario)


def test_publish_rejects_oversized_payloads_and_reserved_headers(on_backend: Runner) -> None:
    async def scenario(env: Env) -> None:
        outbox = Outbox(env.transactions, config(max_payload=4))
        async with outbox.transaction() as tx:
            with pytest.raises(PayloadTooLarge):
                await tx.publish("agg", "Big", b"12345")
            with pytest.raises(ReservedHeader) as info:
                await tx.publish("agg", "Forged", b"1", headers={HEADER_EVENT_ID: "mine", HEADER_SEQUENCE: "9"})
            assert info.value.names == [HEADER_EVENT_ID, HEADER_SEQUENCE]
            with pytest.raises(ValueError):
                await tx.publish("", "NoAggregate", b"1")
            kept = await tx.publish("agg", "Small", b"1234")
        records = await env.log.read(LOG, 0)
        assert [rec.message.headers[HEADER_EVENT_ID] for rec in records] == [kept]
        assert records[0].message.headers[HEADER_SEQUENCE] == "1"

    on_backend(scenario)


def test_sequence_can_be_turned_off(on_backend: Runner) -> None:
    async def scenario(env: Env) -> None:
        outbox = Outbox(env.transactions, config(aggregate_sequence=False))
        await commit_events(outbox, [("agg", "E")])
        (record,) = await env.log.read(LOG, 0)
        assert HEADER_SEQUENCE not in record.message.headers
        assert await env.kv.get(config().sequence_key("agg")) is None

    on_backend(scenario)


# --- relays --------------------------------------------------------------------------------


def test_two_concurrent_relays_lose_nothing_and_never_overlap(on_backend: Runner) -> None:
    async def scenario(env: Env) -> None:
        cfg = config(batch_size=3, poll_interval=0.005, lease_ttl=5.0)
        outbox = Outbox(env.transactions, cfg)
        history = History()
        relays = [relay(env, history, f"r{i}", cfg) for i in (1, 2)]
        stop = asyncio.Event()
        tasks = [asyncio.create_task(r.run(stop)) for r in relays]
        rng = random.Random(3)
        ids: list[str] = []
        for n in range(40):
            ids += await commit_events(outbox, [(f"agg-{rng.randrange(4)}", f"E{n}")])
            if n % 7 == 0:
                await asyncio.sleep(0.01)
        await wait_until_drained(relays[0])
        stop.set()
        await asyncio.gather(*tasks)

        assert history.ids() == ids  # exactly once, in commit order
        assert history.max_in_flight == 1
        assert len(set(history.relays())) == 1  # one lease holder did all the publishing
        standby = relays[0] if history.relays()[0] == "r2" else relays[1]
        assert standby.metrics.standby_polls > 0
        assert standby.metrics.events_relayed == 0
        assert_aggregate_order([m for _, m in history.entries])
        # Stopping released the lease: a third relay takes over without waiting for the TTL.
        await commit_events(outbox, [("agg-0", "Late")])
        assert await relay(env, history, "r3", cfg).run_once() == 1

    on_backend(scenario)


def test_a_relay_stopped_gracefully_hands_its_lease_to_another_id_at_once(on_backend: Runner) -> None:
    """Issue 53: a relay stopped through its lifecycle gives its lease back, so a relay with
    another id publishes at its first poll. (A seeded bug that kept the lease went unseen: every
    test restarted a relay under the same id, which takes its own lease back at once.)"""

    async def scenario(env: Env) -> None:
        cfg = config(lease_ttl=3600.0)  # a lease kept outlives the test: only one given back lets "second" in
        outbox = Outbox(env.transactions, cfg)
        history = History()
        first = relay(env, history, "first", cfg)
        await commit_events(outbox, [("agg", "E0")])
        await first.start()
        await wait_until_drained(first)
        assert first.holds_lease
        report = await first.stop()
        assert not report.forced, report
        assert not first.holds_lease
        await commit_events(outbox, [("agg", "E1")])
        second = relay(env, history, "second", cfg)
        assert await second.run_once() == 1, "the stopped relay kept its lease: another relay must wait out its TTL"
        assert history.relays() == ["first", "second"]

    on_backend(scenario)


def test_lease_expiry_hands_over_to_a_standby(on_backend: Runner) -> None:
    async def scenario(env: Env) -> None:
        clock = ManualClock()
        cfg = config(batch_size=2, lease_ttl=10.0)
        outbox = Outbox(env.transactions, cfg, clock=clock)
        ids = await commit_events(outbox, [("agg", f"E{n}") for n in range(5)])
        history = History()
        active = relay(env, history, "active", cfg, clock)
        standby = relay(env, history, "standby", cfg, clock)
        assert await active.run_once() == 2
        assert await standby.run_once() == 0  # the lease is held
        clock.advance(9)
        assert await active.run_once() == 2  # renewing keeps it
        clock.advance(9)
        assert await standby.run_once() == 0
        clock.advance(2)  # 11 s since the last renewal: expired (the active relay hung)
        assert await standby.run_once() == 1
        with pytest.raises(LeaseLost):
            await active.run_once()
        assert not active.holds_lease
        assert history.relays() == ["active"] * 4 + ["standby"]
        assert history.ids() == ids
        assert active.metrics.leases_lost == 1
        assert standby.metrics.lease_acquisitions == 1

    on_backend(scenario)


def test_a_relay_whose_lease_was_taken_mid_batch_stops_and_cannot_move_the_offset_back(on_backend: Runner) -> None:
    async def scenario(env: Env) -> None:
        clock = ManualClock()
        cfg = config(batch_size=5, lease_ttl=10.0)
        outbox = Outbox(env.transactions, cfg, clock=clock)
        ids = await commit_events(outbox, [(f"agg-{n % 2}", f"E{n}") for n in range(5)])
        history = History()
        successor = relay(env, history, "successor", cfg, clock)

        async def pause_then_successor_runs(message: Message, count: int) -> None:
            if count == 2:  # the stale relay stalls past its lease; the successor takes over
                clock.advance(11)
                assert await successor.run_once() == 5

        stale = relay(env, history, "stale", cfg, clock, after=pause_then_successor_runs)
        with pytest.raises(LeaseLost):
            await stale.run_once()
        assert stale.metrics.batches_cut_short == 1
        assert stale.metrics.events_relayed == 2  # stopped at once, before the third record
        assert await stale.committed() == 5  # its commit of 2 was refused, not applied
        assert history.relays() == ["stale", "stale", *["successor"] * 5]
        deduplicated = history.deduplicated()
        assert [m.headers[HEADER_EVENT_ID] for m in deduplicated] == ids
        assert_aggregate_order(deduplicated)

    on_backend(scenario)


def test_a_successor_fences_the_stale_relay_before_it_publishes_anything(on_backend: Runner) -> None:
    async def scenario(env: Env) -> None:
        clock = ManualClock()
        cfg = config(batch_size=5, lease_ttl=10.0)
        outbox = Outbox(env.transactions, cfg, clock=clock)
        ids = await commit_events(outbox, [("agg", f"E{n}") for n in range(5)])
        history = History()
        successor_started, go_on = asyncio.Event(), asyncio.Event()

        async def hold_first(message: Message, count: int) -> None:
            if count == 1:
                successor_started.set()
                await go_on.wait()

        successor = relay(env, history, "successor", cfg, clock, before=hold_first)
        tasks: list[asyncio.Task[int]] = []

        async def stall(message: Message, count: int) -> None:
            if count == 2:
                clock.advance(11)
                tasks.append(asyncio.create_task(successor.run_once()))
                await successor_started.wait()  # it holds the lease but has committed nothing

        stale = relay(env, history, "stale", cfg, clock, after=stall)
        with pytest.raises(LeaseLost):
            await stale.run_once()
        assert await stale.committed() == 0  # the stale commit of 2 was refused
        go_on.set()
        assert await tasks[0] == 5
        assert await successor.committed() == 5
        assert [m.headers[HEADER_EVENT_ID] for m in history.deduplicated()] == ids

    on_backend(scenario)


class RacingKV:
    """Runs ``race`` once, just before the first compare-and-set on ``key`` after ``armed``."""

    def __init__(self, inner: KeyValue, key: str) -> None:
        self.inner = inner
        self.key = key
        self.race: Callable[[], Awaitable[None]] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def compare_and_set(self, key: str, expected: bytes | None, new: bytes) -> bool:
        if key == self.key and self.race is not None:
            race, self.race = self.race, None
            await race()
        return await self.inner.compare_and_set(key, expected, new)


def test_a_renewal_that_races_a_takeover_loses_the_lease(on_backend: Runner) -> None:
    async def scenario(env: Env) -> None:
        clock = ManualClock()
        cfg = config(lease_ttl=10.0)
        outbox = Outbox(env.transactions, cfg, clock=clock)
        history = History()
        kv = RacingKV(env.kv, cfg.lease)
        holder = OutboxRelay(env.log, kv, RecordingRelaySink(history, "holder"), cfg, "holder", clock=clock)
        standby = relay(env, history, "standby", cfg, clock)
        await commit_events(outbox, [("agg", "E0")])
        assert await holder.run_once() == 1
        ids = await commit_events(outbox, [("agg", "E1")])
        clock.advance(11)  # expired; the holder renews just as the standby takes over

        async def takeover() -> None:
            # Only the lease, not yet the offset: the renewal's CAS alone must notice.
            assert await standby._acquire_or_renew()

        kv.race = takeover
        with pytest.raises(LeaseLost):
            await holder.run_once()
        assert await standby.run_once() == 1
        assert history.relays() == ["holder", "standby"]
        assert history.ids()[1:] == ids

    on_backend(scenario)


def test_offset_commits_never_move_backwards(on_backend: Runner) -> None:
    async def scenario(env: Env) -> None:
        cfg = config()
        await commit_events(Outbox(env.transactions, cfg), [("agg", f"E{n}") for n in range(4)])
        r = relay(env, History(), "r1", cfg)
        assert await r.run_once() == 4
        assert r._lease is not None
        await r._commit(2, r._lease.epoch)  # e.g. a slower concurrent batch of the same relay finishing late
        assert await r.committed() == 4

    on_backend(scenario)


def test_a_sink_failure_mid_batch_loses_nothing_and_duplicates_keep_their_event_id(on_backend: Runner) -> None:
    async def scenario(env: Env) -> None:
        cfg = config(batch_size=10)
        outbox = Outbox(env.transactions, cfg)
        ids = await commit_events(outbox, [("agg", f"E{n}") for n in range(6)])
        history = History()

        async def ack_lost_on_third(message: Message, count: int) -> None:
            if count == 3:  # the broker has it, but the relay never hears back
                raise ConnectionLost("broker went away")

        crashing = relay(env, history, "r1", cfg, after=ack_lost_on_third)
        with pytest.raises(ConnectionLost):
            await crashing.run_once()
        assert await crashing.committed() == 2  # what was acknowledged before the failure
        assert crashing.metrics.publish_failures == 1

        restarted = relay(env, history, "r1", cfg)  # same id: takes its lease back at once
        assert await restarted.run_once() == 4
        assert history.ids() == [*ids[:3], *ids[2:]]  # only the unacknowledged one, same id
        dedup = Deduplicator()
        assert [m.headers[HEADER_EVENT_ID] for _, m in history.entries if dedup.first_time(m)] == ids
        assert dedup.duplicates == 1

    on_backend(scenario)


def test_a_cancelled_relay_resumes_on_restart(on_backend: Runner) -> None:
    async def scenario(env: Env) -> None:
        cfg = config(batch_size=10)
        outbox = Outbox(env.transactions, cfg)
        ids = await commit_events(outbox, [(f"agg-{n % 3}", f"E{n}") for n in range(7)])
        history = History()
        stuck = asyncio.Event()

        async def hang_on_fourth(message: Message, count: int) -> None:
            if count == 4:
                stuck.set()
                await asyncio.Event().wait()  # never returns: the process is killed here

        victim = relay(env, history, "r1", cfg, before=hang_on_fourth)
        task = asyncio.create_task(victim.run_once())
        await stuck.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await victim.committed() == 3

        restarted = relay(env, history, "r1", cfg)
        assert await drain(restarted) == 4
        assert history.ids() == ids
        assert_aggregate_order([m for _, m in history.entries])

    on_backend(scenario)


class CrashBeforeCommit:
    """A key-value whose offset writes fail: the relay dies after publishing, before committing."""

    def __init__(self, inner: KeyValue, offset_key: str) -> None:
        self.inner = inner
        self.offset_key = offset_key

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def compare_and_set(self, key: str, expected: bytes | None, new: bytes) -> bool:
        if key == self.offset_key and json.loads(new)["offset"] > 0:  # stamping the epoch is fine
            raise ConnectionLost("killed before the offset commit")
        return await self.inner.compare_and_set(key, expected, new)


def test_a_relay_killed_before_committing_republishes_the_batch_with_the_same_ids(on_backend: Runner) -> None:
    async def scenario(env: Env) -> None:
        cfg = config(batch_size=10)
        outbox = Outbox(env.transactions, cfg)
        ids = await commit_events(outbox, [("agg", f"E{n}") for n in range(3)])
        history = History()
        kv = CrashBeforeCommit(env.kv, cfg.offset)
        dying = OutboxRelay(env.log, kv, RecordingRelaySink(history, "r1"), cfg, "r1")
        with pytest.raises(ConnectionLost):
            await dying.run_once()
        assert await dying.committed() == 0
        assert await relay(env, history, "r1", cfg).run_once() == 3
        assert history.ids() == ids + ids
        assert [m.headers[HEADER_EVENT_ID] for m in history.deduplicated()] == ids

    on_backend(scenario)


def test_pending_and_lag(on_backend: Runner) -> None:
    async def scenario(env: Env) -> None:
        clock = ManualClock()
        cfg = config(batch_size=2)
        outbox = Outbox(env.transactions, cfg, clock=clock)
        r = relay(env, History(), "r1", cfg, clock)
        assert (await r.pending(), await r.lag()) == (0, 0.0)
        await commit_events(outbox, [("agg", "E0"), ("agg", "E1")])
        clock.advance(2)
        await commit_events(outbox, [("agg", "E2")])
        clock.advance(5)
        assert await r.pending() == 3
        assert await r.lag() == pytest.approx(7.0)
        assert await r.run_once() == 2
        assert await r.pending() == 1
        assert await r.lag() == pytest.approx(5.0)  # now the third event is the oldest
        await r.run_once()
        assert (await r.pending(), await r.lag()) == (0, 0.0)

    on_backend(scenario)


# --- sinks and composition (memstore) ------------------------------------------------------


def test_sink_adapters_route_by_event_type() -> None:
    async def scenario() -> None:
        mem = open_memstore()
        outbox = Outbox(mem.transactions(), config())
        (event_id,) = await commit_events(outbox, [("agg", "OrderPlaced")])
        subscription = await mem.pubsub().subscribe("events-OrderPlaced")
        for n, sink in enumerate(
            [
                QueueSink(mem.queue(), "q-{event_type}"),
                LogSink(mem.log(), "log-{aggregate_id}"),
                PubSubSink(mem.pubsub(), "events-{event_type}"),
            ]
        ):
            await relay_with(mem.log(), mem.keyvalue(), sink, config(group=f"g{n}")).run_once()
        delivery = await mem.queue().receive("q-OrderPlaced")
        assert delivery is not None
        assert delivery.message.headers[HEADER_EVENT_ID] == event_id
        (record,) = await mem.log().read("log-agg", 0)
        assert record.message.headers[HEADER_EVENT_ID] == event_id
        received = await subscription.receive(1.0)
        assert received is not None
        assert received.headers[HEADER_EVENT_ID] == event_id

    asyncio.run(scenario())


def relay_with(log: Log, kv: KeyValue, sink: Any, cfg: OutboxConfig) -> OutboxRelay:
    return OutboxRelay(log, kv, sink, cfg, "r1")


def test_outbox_composes_with_claim_check() -> None:
    async def scenario() -> None:
        mem = open_memstore()
        cc = ClaimCheck(mem.objects(), ClaimCheckConfig(threshold=16, bucket="claims"))
        await cc.ensure_bucket()
        outbox = Outbox(mem.transactions(), config())
        weights = bytes(range(256)) * 8
        async with outbox.transaction() as tx:
            await tx.put("model-7", b"metadata")
            await tx.publish("model-7", "ModelReleased", weights)
        claimed_queue = ClaimCheckQueue(mem.queue(), cc)
        await relay_with(mem.log(), mem.keyvalue(), QueueSink(claimed_queue, "releases"), config()).run_once()
        raw = await mem.queue().receive("releases")
        assert raw is not None
        assert raw.message.payload == b""  # only the reference travelled
        await mem.queue().nack("releases", raw)
        delivery = await claimed_queue.receive("releases")
        assert delivery is not None
        assert delivery.message.payload == weights
        assert delivery.message.headers[HEADER_EVENT_TYPE] == "ModelReleased"
        (record,) = await mem.log().read(LOG, 0)
        assert record.message.payload == weights  # the outbox keeps the original

    asyncio.run(scenario())


# --- outbox + claim check in the transaction -------------------------------------------------


async def claimed_outbox(env: Env, threshold: int = 16) -> tuple[Outbox, ClaimCheck]:
    """An outbox whose large payloads are claimed into a separate (memstore) object store."""
    cc = ClaimCheck(open_memstore().objects(), ClaimCheckConfig(threshold=threshold, bucket="claims", ttl=3600))
    await cc.ensure_bucket()
    return Outbox(env.transactions, config(), claim_check=cc), cc


async def stored(cc: ClaimCheck) -> list[str]:
    return [key async for key in cc.objects.list_keys(cc.config.bucket)]


def test_claimed_in_transaction_the_row_carries_only_the_claim(on_backend: Runner) -> None:
    async def scenario(env: Env) -> None:
        outbox, cc = await claimed_outbox(env)
        big, small = bytes(range(200)), b"tiny"
        async with outbox.transaction() as tx:
            await tx.put("model-7", b"metadata")
            big_id = await tx.publish("model-7", "ModelReleased", big, headers={"trace": "t"})
            # Written before the commit, so the record can never point at a missing object.
            assert len(await stored(cc)) == 1
            await tx.publish("model-7", "Tagged", small)
        assert outbox.metrics.claims_written == 1
        first, second = await env.log.read(LOG, 0)
        assert first.message.payload == b""  # only the claim travels through the outbox
        assert cc.config.field in first.message.headers
        assert first.message.headers[HEADER_EVENT_ID] == big_id
        assert second.message.payload == small
        assert cc.config.field not in second.message.headers
        history = History()
        await drain(relay(env, history, "r1", config()))
        published, inline = [m for _, m in history.entries]
        assert published.payload == b""
        restored = await cc.incoming(published)
        assert restored.payload == big
        assert restored.headers[HEADER_EVENT_ID] == big_id
        assert restored.headers["trace"] == "t"
        assert cc.config.field not in restored.headers
        assert (await cc.incoming(inline)).payload == small
        await cc.release(published)  # the consumer is done with it: the object goes
        assert await stored(cc) == []

    on_backend(scenario)


def test_claimed_rollback_leaves_no_object_and_no_record(on_backend: Runner) -> None:
    async def scenario(env: Env) -> None:
        outbox, cc = await claimed_outbox(env)

        async def failing_block() -> None:
            async with outbox.transaction() as tx:
                await tx.publish("a", "Big", bytes(100))
                await tx.publish("b", "Big", bytes(300))
                assert len(await stored(cc)) == 2
                raise RuntimeError("business rule failed")

        with pytest.raises(RuntimeError, match="business rule"):
            await failing_block()
        assert await stored(cc) == []
        assert await env.log.end_offset(LOG) == 0
        assert (outbox.metrics.claims_written, outbox.metrics.claims_discarded) == (2, 2)

    on_backend(scenario)


def test_claimed_commit_conflict_deletes_the_objects(on_backend: Runner) -> None:
    async def scenario(env: Env) -> None:
        outbox, cc = await claimed_outbox(env)

        async def conflicting_blocks() -> None:
            async with outbox.transaction() as late:
                await late.get("row")  # read: the early block's write to it makes this one abort
                await late.publish("agg", "Late", bytes(100))
                async with outbox.transaction() as early:
                    await early.put("row", b"early")
                    await early.publish("agg", "Early", bytes(200))

        with pytest.raises(TransactionAborted):
            await conflicting_blocks()
        # Only the committed transaction's object remains, and its record points at it.
        (record,) = await env.log.read(LOG, 0)
        ref = cc.reference(record.message)
        assert ref is not None
        assert await stored(cc) == [ref.key]
        assert (await cc.incoming(record.message)).payload == bytes(200)

    on_backend(scenario)


def test_claimed_unknown_commit_outcome_leaves_the_object_to_its_ttl() -> None:
    class LostCommit:
        """Transactions whose commit loses the connection: it may or may not have happened."""

        def __init__(self, inner: Transactions) -> None:
            self.inner = inner

        @asynccontextmanager
        async def transaction(self) -> AsyncIterator[Any]:
            async with self.inner.transaction() as tx:
                yield tx
            raise ConnectionLost("connection lost during commit")

    async def scenario() -> None:
        mem = open_memstore()
        cc = ClaimCheck(mem.objects(), ClaimCheckConfig(threshold=16, bucket="claims", ttl=60))
        await cc.ensure_bucket()
        outbox = Outbox(LostCommit(mem.transactions()), config(), claim_check=cc)
        with pytest.raises(ConnectionLost):
            async with outbox.transaction() as tx:
                await tx.publish("agg", "Big", bytes(100))
        # Here the commit did happen: deleting the object would have left the record dangling.
        (record,) = await mem.log().read(LOG, 0)
        assert (await cc.incoming(record.message)).payload == bytes(100)
        assert outbox.metrics.claims_left_to_ttl == 1
        (key,) = await stored(cc)
        assert (await cc.objects.info("claims", key)).expires_at is not None  # the garbage collector

    asyncio.run(scenario())


def test_claimed_publish_rejects_the_claim_header_and_bad_claim_checks(on_backend: Runner) -> None:
    async def scenario(env: Env) -> None:
        outbox, cc = await claimed_outbox(env)
        async with outbox.transaction() as tx:
            with pytest.raises(ReservedHeader):
                await tx.publish("a", "E", b"x", headers={cc.config.field: "{}"})
        with pytest.raises(OutboxConfigurationError, match="ClaimCheck"):
            Outbox(env.transactions, config(), claim_check=object())  # type: ignore[arg-type]

    on_backend(scenario)


class TruncatingLog:
    """A memstore log extended with the truncate() that cleanup='delete' needs."""

    def __init__(self, inner: Log) -> None:
        self.inner = inner
        self.truncations: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def read(self, log: str, offset: int, *, limit: int = 100, wait: float = 0.0) -> list[Record]:
        return await self.inner.read(log, offset, limit=limit, wait=wait)

    async def truncate(self, log: str, before: int) -> None:
        self.truncations.append(before)


def test_delete_cleanup_truncates_published_records_after_retention() -> None:
    async def scenario() -> None:
        mem = open_memstore()
        clock = ManualClock()
        cfg = config(cleanup="delete", retention=10.0, batch_size=2)
        outbox = Outbox(mem.transactions(), cfg, clock=clock)
        log = TruncatingLog(mem.log())
        r = OutboxRelay(log, mem.keyvalue(), RecordingRelaySink(History(), "r1"), cfg, "r1", clock=clock)
        await commit_events(outbox, [("agg", "E0"), ("agg", "E1"), ("agg", "E2")])
        assert await r.run_once() == 2
        assert log.truncations == []  # published, but younger than the retention
        clock.advance(5)
        assert await r.run_once() == 1
        assert log.truncations == []
        clock.advance(6)  # the first batch is 11 s old, the second 6 s
        await commit_events(outbox, [("agg", "E3")])
        assert await r.run_once() == 1
        assert log.truncations == [2]
        assert r.metrics.truncated_below == 2

    asyncio.run(scenario())


# --- configuration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"log": ""},
        {"group": ""},
        {"batch_size": 0},
        {"poll_interval": 0},
        {"lease_ttl": -1.0},
        {"lease_ttl": 0.15, "poll_interval": 0.1},  # would lapse between polls
        {"cleanup": "vacuum"},
        {"retention": -1.0},
        {"max_payload": -1},
        {"lease_key": ""},
        {"batch_size": "10"},
        {"unknown_option": 1},
    ],
)
def test_config_rejects_bad_values(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        OutboxConfig(**overrides)


def test_config_defaults_and_derived_keys() -> None:
    cfg = OutboxConfig(log="orders-outbox")
    assert (cfg.group, cfg.batch_size, cfg.cleanup) == ("outbox-relay", 100, "mark-published")
    # Derived from the log name, so a per-test name prefix covers them too.
    assert cfg.lease == "orders-outbox-outbox-relay-lease"
    assert cfg.offset == "orders-outbox-outbox-relay-offset"
    assert cfg.sequence_key("o-1") == "orders-outbox-seq-o-1"
    assert OutboxConfig(lease_key="custom").lease == "custom"
    with pytest.raises(ValidationError):
        cfg.batch_size = 5  # frozen


class AppendOnly:
    """A log without ``truncate`` (every built-in log store can truncate now)."""

    def __init__(self, log: Any) -> None:
        self.append, self.read, self.end_offset = log.append, log.read, log.end_offset
        self.commit, self.committed = log.commit, log.committed


def test_relay_and_outbox_reject_unusable_setups() -> None:
    mem = open_memstore()
    sink = QueueSink(mem.queue(), "q")
    with pytest.raises(OutboxConfigurationError, match="relay_id"):
        OutboxRelay(mem.log(), mem.keyvalue(), sink, config(), "")
    with pytest.raises(OutboxConfigurationError, match="truncate"):
        OutboxRelay(AppendOnly(mem.log()), mem.keyvalue(), sink, config(cleanup="delete"), "r1")
    with pytest.raises(OutboxConfigurationError, match="publish"):
        OutboxRelay(mem.log(), mem.keyvalue(), object(), config(), "r1")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        Outbox(mem.transactions(), {"log": "x"})  # type: ignore[arg-type]
    for destination in ("q-{tenant}", "q-{0}", "q-{", ""):
        with pytest.raises(OutboxConfigurationError):
            QueueSink(mem.queue(), destination)


# --- consumer-side dedup -------------------------------------------------------------------


def test_deduplicator_is_bounded_and_keyed_on_event_id() -> None:
    dedup = Deduplicator(capacity=2)
    assert dedup.first_time("a")
    assert not dedup.first_time(Message(b"", {HEADER_EVENT_ID: "a"}))
    assert dedup.first_time("b")
    assert dedup.first_time("c")  # evicts "a", the least recently seen
    assert len(dedup) == 2
    assert "a" not in dedup
    assert dedup.first_time("a")  # forgotten: documented limit of bounded memory
    assert dedup.first_time(Message(b"no id"))
    assert dedup.first_time(Message(b"no id"))
    assert dedup.duplicates == 1
    with pytest.raises(ValueError):
        Deduplicator(capacity=0)


# --- publisher mode cdc ----------------------------------------------------------------------


def test_publisher_defaults_to_the_relay_and_validates_cdc_settings() -> None:
    assert OutboxConfig().publisher.mode == "relay"
    cdc = OutboxConfig.model_validate({"log": "orders", "publisher": {"mode": "cdc"}})
    assert (cdc.cdc, cdc.capture, cdc.record_prefix) == (True, "orders-cdc", "orders-records/")
    assert cdc.record_key("e1") == "orders-records/e1"
    named = OutboxConfig.model_validate({"publisher": {"mode": "cdc", "capture": "c", "record_prefix": "rows/"}})
    assert (named.capture, named.record_prefix) == ("c", "rows/")
    with pytest.raises(ValidationError, match="mode"):
        OutboxConfig.model_validate({"publisher": {"mode": "poll"}})
    with pytest.raises(ValidationError, match="extra"):
        OutboxConfig.model_validate({"publisher": {"mode": "cdc", "slot": "x"}})
    with pytest.raises(ValidationError, match="supports cleanup='mark-published' only"):
        OutboxConfig.model_validate({"publisher": {"mode": "cdc"}, "cleanup": "delete"})


def test_an_outbox_record_round_trips_and_garbage_is_a_typed_error() -> None:
    message = Message(b"\x00payload", {HEADER_EVENT_ID: "e1", "x": "y"}, key="agg")
    assert decode_record("k", encode_record(message, 3)) == (3, message)
    for garbage in (b"not json", b'{"v": 2}', b'{"v": 1, "index": 0}', b"[]"):
        with pytest.raises(OutboxRecordError, match="outbox row 'k' is not an outbox record"):
            decode_record("k", garbage)


def test_publishers_refuse_the_other_mode(on_backend: Runner) -> None:
    async def scenario(env: Env) -> None:
        cdc = OutboxConfig(log=LOG, publisher=OutboxPublisher(mode="cdc"))
        sink = RecordingRelaySink(History(), "p")
        with pytest.raises(OutboxConfigurationError, match="mode is 'cdc'"):
            OutboxRelay(env.log, env.kv, sink, cdc, "r1")
        feed = env.feed
        with pytest.raises(OutboxConfigurationError, match="mode is 'relay'"):
            OutboxCdcPublisher(feed, sink, config())

    on_backend(scenario)


def test_cdc_mode_writes_rows_the_feed_publishes_in_staging_order(on_backend: Runner) -> None:
    async def scenario(env: Env) -> None:
        cfg = OutboxConfig(log=LOG, publisher=OutboxPublisher(mode="cdc"))
        history = History()
        publisher = OutboxCdcPublisher(env.feed, RecordingRelaySink(history, "p"), cfg, kv=env.kv)
        await publisher.start()
        outbox = Outbox(env.transactions, cfg)
        # Event ids are random, so rows sort by key in any order: staging order must survive.
        staged = await commit_events(outbox, [("agg", f"E{n}") for n in range(6)])
        async with outbox.transaction() as tx:
            staged += [await tx.publish("agg", f"T{n}", b"") for n in range(5)]

        async def rolled_back() -> None:
            async with outbox.transaction() as tx:
                await tx.publish("agg", "RolledBack", b"")
                raise RuntimeError

        with pytest.raises(RuntimeError):
            await rolled_back()
        assert await env.log.end_offset(LOG) == 0, "cdc mode must not append to the outbox log"
        assert await publisher.drain() == len(staged)
        assert history.ids() == staged
        assert [m.headers[HEADER_SEQUENCE] for m in history.deduplicated()] == [str(n) for n in range(1, 12)]
        assert publisher.metrics.position > 0
        assert await publisher.drain() == 0  # confirmed: nothing comes again
        await publisher.drop()

    on_backend(scenario)
