"""Acceptance suite of event sourcing (RFC-009 §4) over every compatible (store x views) pair.

``store`` holds the streams, snapshots and the notification log (it needs transactions, a log
and key-value); ``views`` holds projections' read models and tracking positions, with a
transaction per batch when it has transactions, else per-key offset stamps written with
compare-and-set (projection tests run once per kind the views backend offers).

What it guarantees: of concurrent appends at one expected version exactly one wins and the
losers' events (and snapshots) are nowhere (not in the stream, not in the notifications); an
append expecting a version the stream has not reached is refused; every stream name, however
close to another, is a stream of its own, read back whole however long; event data over the
config's ``max_event_size`` is refused with nothing written; state loaded from a
snapshot equals full replay and the model, at every version and point in time; old event
schemas are read upcast while the stored records stay as written; the notification order never
skips an append that committed late; a projection killed mid-batch and restarted applies every
event exactly once; a projection in the background catches up a backlog of several pages
without pausing between them; a rebuilt view equals the incremental one; lag is observable; and
a store server killed and restarted keeps every acknowledged append.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prism_testkit import PrismEnv, Slot, patience, prism_suite
from prism_testkit.errors import TransactionAborted
from prism_testkit.interfaces import Transaction, Transactions
from prism_testkit.isolation import Namespace
from prism_testkit.patterns.event_sourcing import (
    AppendResult,
    EventSourcingConfig,
    EventStore,
    InvalidEvent,
    NewEvent,
    ProjectionRunner,
    RecordedEvent,
    Repository,
    Upcasters,
    VersionConflict,
    ViewWriter,
)
from prism_testkit.simulation.clock import ManualClock

from ._bank import (
    TOTAL,
    Account,
    CommandRefused,
    balances,
    command,
    deposit,
    event_store,
    view_kinds,
    views_store,
)
from ._doubles import HeldCommits, Killed
from ._helpers import prism_settings, progress_at_first_pause

pytestmark = prism_suite(
    "event_sourcing",
    store=Slot.needs("transactions", "log", "keyvalue"),
    views=Slot.needs("keyvalue.cas"),
)

ACCOUNTS = ("a", "b", "c")
Op = tuple[Literal["open", "deposit", "withdraw"], str, int]
OPS: st.SearchStrategy[list[Op]] = st.lists(
    st.tuples(st.sampled_from(["open", "deposit", "withdraw"]), st.sampled_from(ACCOUNTS), st.integers(1, 60)),
    max_size=25,
)


def store_of(prism_env: PrismEnv, ns: Namespace, **kwargs: Any) -> EventStore:
    return event_store(prism_env.driver("store"), ns, **kwargs)


def model_step(state: dict[str, Any], op: Op) -> dict[str, Any] | None:
    """The account model: the state after ``op``, or None when the command is refused."""
    kind, _, amount = op
    if kind == "open":
        return None if state["open"] else {"open": True, "balance": state["balance"]}
    if not state["open"] or (kind == "withdraw" and amount > state["balance"]):
        return None
    return {"open": True, "balance": state["balance"] + (amount if kind == "deposit" else -amount)}


Model = dict[str, list[dict[str, Any]]]  # per account, the state at every version (index = version)


def new_model() -> Model:
    return {a: [Account().initial()] for a in ACCOUNTS}


async def play(repo: Repository, ops: list[Op], clock: ManualClock | None = None, states: Model | None = None) -> Model:
    """Run ``ops`` as commands, checking each outcome against the model; the model after them."""
    states = new_model() if states is None else states
    for op in ops:
        kind, account, amount = op
        expected = model_step(states[account][-1], op)
        if clock is not None:
            clock.advance(1.0)
        try:
            await repo.execute(account, command(kind, amount))
        except CommandRefused:
            assert expected is None, f"{op} was refused, the model accepts it"
            continue
        assert expected is not None, f"{op} was accepted, the model refuses it (overdraft or closed account)"
        states[account].append(expected)
    return states


# --- optimistic concurrency ----------------------------------------------------------------


async def test_concurrent_writers_on_one_stream_exactly_one_wins_each_version(prism_env: PrismEnv) -> None:
    async with prism_env.example() as ns:
        store = store_of(prism_env, ns)
        winners: list[str] = []
        losers: set[str] = set()
        for version in range(4):
            tags = [f"v{version}-w{w}" for w in range(4)]
            results = await asyncio.gather(
                *(
                    store.append(
                        "acct", [NewEvent("Tagged", {"tag": t}), NewEvent("Tagged", {"tag": t + "+"})], version * 2
                    )
                    for t in tags
                ),
                return_exceptions=True,
            )
            won = [t for t, r in zip(tags, results, strict=True) if not isinstance(r, BaseException)]
            assert len(won) == 1, f"version {version * 2}: {len(won)} appends won: {results}"
            # a loser may abort at any statement (a deadlock victim of a locking engine), not only conflict
            losses = [r for r in results if isinstance(r, BaseException)]
            assert all(isinstance(r, VersionConflict | TransactionAborted) for r in losses), results
            winners.append(won[0])
            losers.update(t for t in tags if t not in won)
        stream = [e.data["tag"] for e in await store.read_stream("acct")]
        assert stream == [t for w in winners for t in (w, w + "+")]
        assert [e.position for e in await store.read_stream("acct")] == list(range(1, 9))
        notified = [n.event.data["tag"] for n in await store.read_notifications(0, limit=1000)]
        assert notified == stream, "the notification log holds other events than the stream"
        assert not losers & {t.rstrip("+") for t in notified}, "a losing append's events are visible"


async def test_a_wrong_expected_version_or_bad_event_writes_nothing(prism_env: PrismEnv) -> None:
    async with prism_env.example() as ns:
        store = store_of(prism_env, ns)
        await store.append("acct", [NewEvent("Opened", {})], 0)
        with pytest.raises(VersionConflict) as info:
            await store.append("acct", [NewEvent("Deposited", {"amount": 1})], 0)
        assert (info.value.expected, info.value.actual) == (0, 1)
        with pytest.raises(InvalidEvent):
            await store.append("acct", [NewEvent("Deposited", {"amount": float("inf")})], 1)
        with pytest.raises(InvalidEvent):
            await store.append("", [NewEvent("Opened", {})], 0)
        assert await store.version("acct") == 1
        assert await store.notifications_end() == 1


async def test_an_append_retried_with_its_event_ids_lands_once(prism_env: PrismEnv) -> None:
    async with prism_env.example() as ns:
        store = store_of(prism_env, ns)
        events = [NewEvent("Opened", {}, event_id="open-1"), NewEvent("Deposited", {"amount": 5}, event_id="dep-1")]
        first = await store.append("acct", events, 0)
        retried = await store.append("acct", events, 0)  # as after a commit whose answer was lost
        assert [e.event_id for e in retried.events] == [e.event_id for e in first.events] == ["open-1", "dep-1"]
        assert retried.version == 2
        assert await store.notifications_end() == 2
        with pytest.raises(VersionConflict):  # other ids at that version: a real conflict
            await store.append("acct", [NewEvent("Opened", {}, event_id="open-2")], 0)
        other = [NewEvent("Opened", {}, event_id="open-1"), NewEvent("Deposited", {"amount": 9}, event_id="dep-2")]
        try:  # the same first id, another second one: not the same append, a conflict
            taken: AppendResult | None = await store.append("acct", other, 0)
        except VersionConflict:
            taken = None
        assert taken is None, (
            f"an append sharing only its first event id with the stream was taken for a retry: {taken}"
        )
        assert [e.event_id for e in await store.read_stream("acct")] == ["open-1", "dep-1"]
        # The stream holds the first event of an append and no more: not that append, a conflict.
        await store.append("solo", [NewEvent("Opened", {}, event_id="solo-1")], 0)
        longer = [NewEvent("Opened", {}, event_id="solo-1"), NewEvent("Deposited", {"amount": 3}, event_id="solo-2")]
        try:
            taken = await store.append("solo", longer, 0)
        except VersionConflict:
            taken = None
        assert taken is None, (
            f"an append was taken for a retry though the stream holds only its first event: {taken}, "
            f"stream {[e.event_id for e in await store.read_stream('solo')]}"
        )


async def outcome(append: Any) -> AppendResult | VersionConflict | TransactionAborted:
    """The append's result, or the VersionConflict it raised (or the TransactionAborted: the
    promise lets a conflict surface at any statement of a transaction)."""
    try:
        result: AppendResult = await append
    except (VersionConflict, TransactionAborted) as exc:
        return exc
    return result


@asynccontextmanager
async def ended_on_exit() -> AsyncIterator[list[asyncio.Task[Any]]]:
    """Tasks added to the list are ended when the block exits, however it exits: one still
    waiting (a held commit, after a failed assertion) is cancelled, so its transaction rolls
    back and holds no lock into the next test."""
    tasks: list[asyncio.Task[Any]] = []
    try:
        yield tasks
    finally:
        for task in tasks:
            task.cancel()  # a finished task ignores it
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_an_append_expecting_a_version_the_stream_has_not_reached_writes_nothing(prism_env: PrismEnv) -> None:
    async with prism_env.example() as ns:
        store = store_of(prism_env, ns)
        await store.append("acct", [NewEvent("Opened", {})], 0)
        attempts = [
            ("acct", [NewEvent("Deposited", {"amount": 1})], 3),
            ("acct", [NewEvent("Deposited", {"amount": 2}, event_id="ahead-1")], 2),  # the retry path too
            ("new", [NewEvent("Opened", {})], 1),
            ("new", [NewEvent("Opened", {}, event_id="new-1"), NewEvent("Opened", {}, event_id="new-2")], 4),
        ]
        for stream, events, expected in attempts:
            actual = 1 if stream == "acct" else 0
            result = await outcome(store.append(stream, events, expected))
            assert isinstance(result, VersionConflict), (
                f"an append expecting version {expected} of stream {stream!r} at version {actual} was accepted: "
                f"{result}"
            )
            assert (result.expected, result.actual) == (expected, actual), result
        assert (await store.version("acct"), await store.version("new")) == (1, 0)
        assert [e.position for e in await store.read_stream("acct")] == [1]
        assert await store.read_stream("new") == []
        assert await store.notifications_end() == 1, "an append that expected a version ahead left notifications"


# How long a held commit waits for a concurrent transaction to reach its own commit (a locking
# backend makes that one wait for the first instead: then the test goes on without it), on a
# quiet machine: scaled when used (patience.quiet), so a loaded machine still lets them overlap.
PATIENCE = 0.3


class GatedCommits:
    """Transactions that, once their block has run, wait for their gate before committing, so
    a test decides which of two appends that read the same head commits first."""

    def __init__(self, inner: Transactions, count: int) -> None:
        self.inner = inner
        self.started = 0
        self.reached = [asyncio.Event() for _ in range(count)]  # the n-th transaction's block has run
        self.go = [asyncio.Event() for _ in range(count)]  # the n-th transaction may commit

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        n, self.started = self.started, self.started + 1
        async with self.inner.transaction() as tx:
            try:
                yield tx
            except BaseException:
                self.reached[n].set()  # ended without committing: nothing to hold
                raise
            self.reached[n].set()
            await self.go[n].wait()


async def test_a_losing_appends_snapshot_is_nowhere(prism_env: PrismEnv) -> None:
    async with prism_env.example() as ns, ended_on_exit() as tasks:
        store = store_of(prism_env, ns, snapshot_interval=1)  # every append snapshots
        await Repository(store, Account()).execute("a", command("open", 0))
        gated = GatedCommits(store.transactions, 2)
        repo = Repository(EventStore(gated, store.log, store.kv, store.config), Account())
        loaded = await repo.load("a")
        bound = patience.bound("calm-op")
        winner = asyncio.create_task(outcome(repo.save(loaded, [NewEvent("Deposited", {"amount": 5, "tag": "w"})])))
        tasks.append(winner)
        await asyncio.wait_for(gated.reached[0].wait(), bound)
        loser = asyncio.create_task(outcome(repo.save(loaded, [NewEvent("Deposited", {"amount": 7, "tag": "l"})])))
        tasks.append(loser)
        # Both read version 1, neither committed; a locking backend instead makes the loser's
        # read wait for the winner's commit, so it is let go after PATIENCE.
        loser_ready = asyncio.ensure_future(gated.reached[1].wait())
        tasks.append(loser_ready)
        await asyncio.wait({loser_ready}, timeout=patience.quiet(PATIENCE))
        gated.go[0].set()
        won = await asyncio.wait_for(winner, bound)
        gated.go[1].set()
        lost = await asyncio.wait_for(loser, bound)
        conflicts = VersionConflict | TransactionAborted
        assert not isinstance(won, conflicts), f"the append of 5, committed first, lost: {won}"
        assert isinstance(lost, conflicts), f"the append of 7, which read the same version, won too: {lost}"
        snapshot = await repo.snapshot("a")
        assert snapshot is not None
        assert (snapshot.version, snapshot.state) == (2, {"open": True, "balance": 5}), (
            f"the snapshot is {snapshot} after the append of 5 won and the append of 7 lost: the losing append's "
            "snapshot was kept"
        )
        assert await repo.load("a") == await repo.load("a", use_snapshot=False)


async def test_the_notification_order_never_skips_a_late_commit(prism_env: PrismEnv) -> None:
    async with prism_env.example() as ns, ended_on_exit() as tasks:
        store = store_of(prism_env, ns)
        held = HeldCommits(store.transactions)
        slow = EventStore(held, store.log, store.kv, store.config)
        held.armed = True
        late = asyncio.create_task(slow.append("began-first", [NewEvent("Opened", {})], 0))
        tasks.append(late)
        await asyncio.wait_for(held.reached.wait(), patience.bound("calm-op"))
        for i in range(3):
            await store.append(f"quick-{i}", [NewEvent("Opened", {})], 0)
        follower = [n.event.stream for n in await store.read_notifications(0)]
        held.release.set()
        await asyncio.wait_for(late, patience.bound("calm-op"))
        follower += [n.event.stream for n in await store.read_notifications(len(follower))]
        # Offsets follow commit order: the late commit comes after the quick ones, where a
        # follower that already read them still finds it.
        assert follower == ["quick-0", "quick-1", "quick-2", "began-first"]


# --- streams: names, length, limits -------------------------------------------------------

# Names that a key built carelessly from the stream name would merge: prefixes, separators,
# a position-like suffix, case, spaces, wildcards, path segments, non-ASCII, the longest allowed.
HOSTILE_STREAMS = (
    "a",
    "a1",
    "a-1",
    "a/1",
    "a_1",
    "a:1",
    "a.1",
    "a 1",
    "A",
    "a/",
    "/a",
    "a//1",
    "a/000000000001",
    "a/head/a",
    "a%",
    "a*",
    "a?",
    "a\\1",
    "..",
    "a/../a",
    "é/ü",
    "x" * 200,
)


async def test_every_stream_name_is_a_stream_of_its_own(prism_env: PrismEnv) -> None:
    async with prism_env.example() as ns:
        store = store_of(prism_env, ns)
        written: dict[str, list[int]] = {}
        for i, stream in enumerate(HOSTILE_STREAMS):
            # "a" gets 12 events: "a" + "11" and "a1" + "1" are one key if the position is not
            # kept apart from the name.
            count = 12 if stream == "a" else 1 + i % 3
            numbers = [i * 100 + n for n in range(count)]
            result = await outcome(store.append(stream, [NewEvent("Tagged", {"n": n}) for n in numbers], 0))
            assert not isinstance(result, TransactionAborted), f"an append to new stream {stream!r} aborted: {result}"
            assert not isinstance(result, VersionConflict), (
                f"stream {stream!r} is not a stream of its own: new, it is already at version {result.actual} "
                f"(written before it: {list(written)})"
            )
            written[stream] = numbers
        for stream, numbers in written.items():
            events = await store.read_stream(stream)
            found = [(e.stream, e.position, e.data["n"]) for e in events]
            assert found == [(stream, p, n) for p, n in enumerate(numbers, start=1)], (
                f"stream {stream!r} is not a stream of its own: it reads back {found}"
            )
            assert await store.version(stream) == len(numbers)
        notified = [(n.event.stream, n.event.data["n"]) for n in await store.read_notifications(0, limit=1000)]
        assert notified == [(s, n) for s, numbers in written.items() for n in numbers]


async def test_a_long_stream_reads_back_whole_and_in_any_range(prism_env: PrismEnv) -> None:
    async with prism_env.example() as ns:
        store = store_of(prism_env, ns)
        total = 0
        for size in (7, 1, 30, 2, 33, 5, 29):  # 107 events, appends straddling every 32
            await store.append("long", [NewEvent("Tagged", {"n": total + k}) for k in range(size)], total)
            total += size
        whole = [(e.position, e.data["n"]) for e in await store.read_stream("long")]
        missing = sorted(set(range(1, total + 1)) - {p for p, _ in whole})
        assert whole == [(p, p - 1) for p in range(1, total + 1)], (
            f"a stream of {total} events reads back {len(whole)}, positions missing: {missing}"
        )
        for after, until in ((0, 32), (31, 33), (32, 64), (1, 100), (63, None), (96, total)):
            part = [e.position for e in await store.read_stream("long", after=after, until_version=until)]
            end = total if until is None else until
            assert part == list(range(after + 1, end + 1)), (
                f"the events after {after} up to {until} of a stream of {total} are positions {part}"
            )


async def test_event_data_over_max_event_size_is_refused_and_nothing_written(prism_env: PrismEnv) -> None:
    async with prism_env.example() as ns:
        driver = prism_env.driver("store")
        config = EventSourcingConfig(name=ns.name("bank"), max_event_size=64)
        store = EventStore(driver.transactions(), driver.log(), driver.keyvalue(), config)
        await store.append("acct", [NewEvent("Noted", {"text": "short"})], 0)
        big = NewEvent("Noted", {"text": "x" * 1000})
        for events in ([big], [NewEvent("Noted", {"text": "fits"}), big]):
            try:
                stored: AppendResult | None = await store.append("acct", events, 1)
            except InvalidEvent:
                stored = None
            assert stored is None, (
                f"event data of over 1000 bytes was stored by a store with max_event_size 64: {stored}"
            )
        assert [e.data["text"] for e in await store.read_stream("acct")] == ["short"]
        assert await store.notifications_end() == 1


# --- snapshots, time travel, upcasting -----------------------------------------------------


@prism_settings
@given(ops=OPS, interval=st.integers(1, 4))
async def test_snapshot_plus_later_events_equals_full_replay_and_the_model(
    prism_env: PrismEnv, ops: list[Op], interval: int
) -> None:
    async with prism_env.example() as ns:
        repo = Repository(store_of(prism_env, ns, snapshot_interval=interval), Account())
        model = await play(repo, ops)
        for account in ACCOUNTS:
            latest, replayed = await repo.load(account), await repo.load(account, use_snapshot=False)
            assert latest == replayed, (
                f"{account}: loading from its snapshot ({await repo.snapshot(account)}) gives version "
                f"{latest.version} {latest.state}, full replay version {replayed.version} {replayed.state}"
            )
            assert (latest.version, latest.state) == (len(model[account]) - 1, model[account][-1])
            snapshot = await repo.snapshot(account)
            if latest.version >= interval:
                assert snapshot is not None, f"{account} at version {latest.version}: no snapshot every {interval}"
                assert snapshot.state == model[account][snapshot.version]
            for version, state in enumerate(model[account]):
                assert (await repo.load(account, at_version=version)).state == state


async def test_an_append_of_several_events_across_a_snapshot_interval_snapshots(prism_env: PrismEnv) -> None:
    async with prism_env.example() as ns:
        repo = Repository(store_of(prism_env, ns, snapshot_interval=2), Account())
        start = await repo.load("a")
        events = [NewEvent("Opened", {}), NewEvent("Deposited", {"amount": 5}), NewEvent("Deposited", {"amount": 7})]
        saved = await repo.save(start, events)  # version 0 -> 3 in one append: past the multiple 2
        snapshot = await repo.snapshot("a")
        assert snapshot is not None, "an append taking the stream from version 0 to 3 took no snapshot every 2"
        assert (snapshot.version, snapshot.state) == (3, saved.state) == (3, {"open": True, "balance": 12}), (
            f"the snapshot after the append is {snapshot}, the state {saved}"
        )


@prism_settings
@given(ops=OPS)
async def test_time_travel_gives_the_state_as_of_any_moment(prism_env: PrismEnv, ops: list[Op]) -> None:
    async with prism_env.example() as ns:
        clock = ManualClock()
        repo = Repository(store_of(prism_env, ns, clock=clock, snapshot_interval=3), Account())
        model = await play(repo, ops, clock)
        for account in ACCOUNTS:
            events = await repo.store.read_stream(account)
            assert [e.recorded_at for e in events] == sorted(e.recorded_at for e in events)
            for version, event in enumerate(events, start=1):
                at = await repo.load(account, at_time=event.recorded_at)
                assert (at.version, at.state) == (version, model[account][version])
                before = await repo.load(account, at_time=event.recorded_at - 0.5)
                assert before.state == model[account][version - 1]


async def test_old_event_schemas_are_read_upcast_and_stored_as_written(prism_env: PrismEnv) -> None:
    async with prism_env.example() as ns:
        old = store_of(prism_env, ns)
        await old.append("acct", [NewEvent("Opened", {}), NewEvent("Deposited", {"cents": 1250})], 0)
        upcasters = Upcasters()
        upcasters.register("Deposited", 1)(lambda data: {"amount": data["cents"] // 100, "tag": ""})
        upcasters.register("Deposited", 2)(lambda data: {**data, "currency": "EUR"})
        new = store_of(prism_env, ns, upcasters=upcasters)
        await new.append("acct", [NewEvent("Deposited", {"amount": 3, "tag": "", "currency": "EUR"})], 2)
        repo = Repository(new, Account())
        assert (await repo.load("acct")).state == {"open": True, "balance": 15}
        read = [(e.schema, dict(e.data)) for e in await new.read_stream("acct") if e.type == "Deposited"]
        assert read == [
            (3, {"amount": 12, "tag": "", "currency": "EUR"}),
            (3, {"amount": 3, "tag": "", "currency": "EUR"}),
        ]
        assert [n.event.schema for n in await new.read_notifications(0) if n.event.type == "Deposited"] == [3, 3]
        raw = await prism_env.driver("store").keyvalue().get(new.config.event_key("acct", 2))
        assert raw is not None
        assert (json.loads(raw)["schema"], json.loads(raw)["data"]) == (1, {"cents": 1250})


async def test_a_clock_that_steps_back_never_makes_time_travel_skip_an_event(prism_env: PrismEnv) -> None:
    async with prism_env.example() as ns:
        clock = ManualClock()
        repo = Repository(store_of(prism_env, ns, clock=clock), Account())
        await repo.execute("a", command("open", 0))
        clock.now -= 10.0  # the store's clock steps back (NTP) between two appends
        await repo.execute("a", command("deposit", 7))
        stamps = [e.recorded_at for e in await repo.store.read_stream("a")]
        assert stamps == sorted(stamps), (
            f"recorded_at decreases within the stream after the clock stepped back: {stamps}"
        )
        at = await repo.load("a", at_time=stamps[-1])
        assert (at.version, at.state["balance"]) == (2, 7), (
            f"the state as of the last event's time is version {at.version} with {at.state}: time travel dropped "
            "events recorded before that instant"
        )


class AccountInCents(Account):
    """The account aggregate after its state changed shape (balance in cents): old snapshots
    no longer fit."""

    snapshot_schema = 2

    def initial(self) -> Any:
        return {"open": False, "cents": 0}

    def apply(self, state: Any, event: RecordedEvent) -> Any:
        if event.type == "Opened":
            return {"open": True, "cents": state["cents"]}
        sign = 1 if event.type == "Deposited" else -1
        return {"open": state["open"], "cents": state["cents"] + sign * 100 * int(event.data["amount"])}


async def test_a_snapshot_of_another_state_schema_is_ignored(prism_env: PrismEnv) -> None:
    async with prism_env.example() as ns:
        store = store_of(prism_env, ns, snapshot_interval=2)
        await play(Repository(store, Account()), [("open", "a", 0), ("deposit", "a", 12), ("deposit", "a", 3)])
        assert await Repository(store, Account()).snapshot("a") is not None, "no snapshot of the old schema was taken"
        repo = Repository(store, AccountInCents())
        assert await repo.snapshot("a") is None, "a snapshot taken under state schema 1 is offered to schema 2"
        loaded, replayed = await repo.load("a"), await repo.load("a", use_snapshot=False)
        assert loaded == replayed, (
            f"loading with snapshots gives {loaded.state}, full replay {replayed.state}: a snapshot of the old "
            "state schema was used"
        )
        assert loaded.state == {"open": True, "cents": 1500}


# --- projections ---------------------------------------------------------------------------


def crashing(at: int) -> Any:
    """The balances handler, dying when it reaches its ``at``-th event (after earlier writes)."""
    seen = 0

    async def handle(views: ViewWriter, event: RecordedEvent) -> None:
        nonlocal seen
        seen += 1
        if seen == at:
            raise Killed
        await balances(views, event)

    return handle


async def expected_balances(repo: Repository) -> dict[str, int]:
    found = {a: (await repo.load(a)).state for a in ACCOUNTS}
    return {a: s["balance"] for a, s in found.items() if s["open"]}


async def read_view(runner: ProjectionRunner) -> dict[str, int]:
    values = {a: await runner.views.get(a) for a in ACCOUNTS}
    return {a: v for a, v in values.items() if v is not None}


def kinds_of(prism_env: PrismEnv) -> list[str]:
    return view_kinds(prism_env.driver("views"))


@pytest.mark.parametrize("kind", ["transactional", "keyvalue"])
@prism_settings
@given(ops=OPS, crashes=st.lists(st.integers(1, 8), max_size=3), batch=st.integers(1, 6))
async def test_a_projection_killed_mid_batch_applies_every_event_exactly_once(
    prism_env: PrismEnv, kind: str, ops: list[Op], crashes: list[int], batch: int
) -> None:
    if kind not in kinds_of(prism_env):
        pytest.skip(f"{prism_env.spec('views').name} has no transactions")
    async with prism_env.example() as ns:
        repo = Repository(store_of(prism_env, ns), Account())
        await play(repo, ops)
        views = views_store(prism_env.driver("views"), ns, "balances", kind)
        for at in crashes:  # each incarnation dies somewhere in its batches
            with contextlib.suppress(Killed):  # (one that caught up before ``at`` simply stops)
                await ProjectionRunner(repo.store, views, crashing(at), batch_size=batch).catch_up()
        runner = ProjectionRunner(repo.store, views, balances, batch_size=batch)
        await runner.catch_up()
        expected = await expected_balances(repo)
        assert await read_view(runner) == expected
        assert (await views.get(TOTAL) or 0) == sum(expected.values())
        assert await runner.position() == await repo.store.notifications_end()


@pytest.mark.parametrize("kind", ["transactional", "keyvalue"])
async def test_a_rebuilt_view_equals_the_incremental_one_and_lag_is_observable(prism_env: PrismEnv, kind: str) -> None:
    if kind not in kinds_of(prism_env):
        pytest.skip(f"{prism_env.spec('views').name} has no transactions")
    async with prism_env.example() as ns:
        clock = ManualClock()
        repo = Repository(store_of(prism_env, ns, clock=clock), Account())
        incremental = ProjectionRunner(
            repo.store, views_store(prism_env.driver("views"), ns, "inc", kind), balances, batch_size=2
        )
        ops: list[Op] = [("open", a, 0) for a in ACCOUNTS] + [
            ("deposit" if i % 3 else "withdraw", ACCOUNTS[i % 3], 10 + i) for i in range(12)
        ]
        model = new_model()
        for i, op in enumerate(ops):
            await play(repo, [op], clock, model)
            if i % 5 == 4:
                await incremental.run_once()
        end = await repo.store.notifications_end()
        clock.advance(30.0)
        lag = await incremental.lag()
        assert lag.events == end - await incremental.position() > 0
        assert lag.seconds >= 30.0
        await incremental.catch_up()
        assert await incremental.lag() == type(lag)(0, 0.0)
        rebuilt = ProjectionRunner(
            repo.store, views_store(prism_env.driver("views"), ns, "rebuilt", kind), balances, batch_size=100
        )
        await rebuilt.catch_up()
        assert await read_view(rebuilt) == await read_view(incremental) == await expected_balances(repo)
        assert await rebuilt.views.get(TOTAL) == await incremental.views.get(TOTAL)


async def test_a_keyvalue_view_replaying_its_batch_after_a_crash_does_not_apply_an_event_twice(
    prism_env: PrismEnv,
) -> None:
    async with prism_env.example() as ns:
        repo = Repository(store_of(prism_env, ns), Account())
        await play(repo, [("open", "a", 0), ("deposit", "a", 10), ("open", "b", 0), ("deposit", "b", 1)])
        views = views_store(prism_env.driver("views"), ns, "balances", "keyvalue")
        # One batch of four: the first three events write their keys, the process dies at the
        # fourth, and the tracking position stays at 0: the restart replays all four.
        with pytest.raises(Killed):
            await ProjectionRunner(repo.store, views, crashing(4), batch_size=4).catch_up()
        assert await views.position() == 0
        runner = ProjectionRunner(repo.store, views, balances, batch_size=4)
        await runner.catch_up()
        found = await read_view(runner)
        assert found == {"a": 10, "b": 1}, f"after replaying a crashed batch the view holds {found}, not a=10 and b=1"
        total = await views.get(TOTAL)
        assert total == 11, f"the bank total is {total} after replaying a crashed batch, not 11"


@pytest.mark.parametrize("driven", ["run", "lifecycle"])
async def test_a_background_projection_with_several_pages_pending_catches_up_without_pausing(
    prism_env: PrismEnv, driven: str
) -> None:
    """More events pending than one page: a runner following the store in the background
    applies page after page and pauses its poll interval only once nothing is left. (A pause
    after each full page would cost a poll interval per page: throughput that a test with one
    page pending never sees.) The poll interval outlasts the test, so the first pause is the
    only one, and where it falls is read from the runner, not timed."""
    async with prism_env.example() as ns:
        repo = Repository(store_of(prism_env, ns), Account())
        await play(repo, [("open", a, 0) for a in ACCOUNTS] + [("deposit", ACCOUNTS[i % 3], i + 1) for i in range(10)])
        pending = await repo.store.notifications_end()
        batch = 4
        assert pending > 2 * batch, f"{pending} events pending: not several pages of {batch}"
        views = views_store(prism_env.driver("views"), ns, "pages", kinds_of(prism_env)[0])
        runner = ProjectionRunner(
            repo.store, views, balances, batch_size=batch, poll_interval=patience.handed("outlive-run")
        )
        first = await progress_at_first_pause(runner, driven, lambda: runner.applied)
        assert first == pending, (
            f"the projection paused its poll interval after applying {first} of {pending} pending events "
            f"(pages of {batch}): it waits a poll interval per full page"
        )
        assert await runner.position() == pending
        assert await read_view(runner) == await expected_balances(repo)


async def test_lag_is_the_age_of_the_oldest_unapplied_event(prism_env: PrismEnv) -> None:
    async with prism_env.example() as ns:
        clock = ManualClock()
        repo = Repository(store_of(prism_env, ns, clock=clock), Account())
        kind = kinds_of(prism_env)[0]
        runner = ProjectionRunner(
            repo.store, views_store(prism_env.driver("views"), ns, "lag", kind), balances, batch_size=1
        )
        await repo.execute("a", command("open", 0))
        clock.advance(10.0)
        await repo.execute("a", command("deposit", 5))
        clock.advance(5.0)
        lag = await runner.lag()
        assert (lag.events, lag.seconds) == (2, 15.0), (
            f"two events 15 s and 5 s old are unapplied, the lag reads {lag.events} events, {lag.seconds} s "
            "(the age of the oldest unapplied event is the lag)"
        )
        await runner.run_once()
        lag = await runner.lag()
        assert (lag.events, lag.seconds) == (1, 5.0), f"one event 5 s old is unapplied, the lag reads {lag}"


# --- durability ----------------------------------------------------------------------------


async def test_a_store_server_killed_and_restarted_keeps_every_acknowledged_append(prism_env: PrismEnv) -> None:
    spec = prism_env.spec("store")
    if prism_env.control("store") is None or not spec.properties.durable:
        pytest.skip(f"{spec.name}: no server the harness controls, or not declared durable")
    async with prism_env.example() as ns:
        repo = Repository(store_of(prism_env, ns, snapshot_interval=2), Account())
        ops: list[Op] = [
            ("open", "a", 0),
            ("deposit", "a", 40),
            ("withdraw", "a", 15),
            ("open", "b", 0),
            ("deposit", "b", 7),
        ]
        model = await play(repo, ops)
        before = [(n.offset, n.event.event_id) for n in await repo.store.read_notifications(0)]
        driver = await prism_env.restart("store", kill=True)
        after_restart = Repository(event_store(driver, ns, snapshot_interval=2), Account())
        assert [(n.offset, n.event.event_id) for n in await after_restart.store.read_notifications(0)] == before
        for account in ("a", "b"):
            loaded = await after_restart.load(account)
            assert loaded == await after_restart.load(account, use_snapshot=False)
            assert loaded.state == model[account][-1]
        await after_restart.execute("a", lambda loaded: deposit(loaded, 5))
        assert (await after_restart.load("a")).state["balance"] == 30
