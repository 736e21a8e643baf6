"""Unit tests of patterns.event_sourcing over memstore and sqlite (both have transactions,
key-value with compare-and-set and a log)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import ValidationError

from prism_testkit.backends.memstore import open_memstore
from prism_testkit.driver import Driver
from prism_testkit.interfaces import KeyValue, Log, Transactions
from prism_testkit.patterns.event_sourcing import (
    CorruptStream,
    EventSourcingConfig,
    EventSourcingConfigurationError,
    EventStore,
    InvalidEvent,
    KeyValueViews,
    NewEvent,
    ProjectionRunner,
    ProjectionTimeout,
    RecordedEvent,
    Repository,
    TransactionalViews,
    UnknownVersion,
    UpcastError,
    Upcasters,
    VersionConflict,
    ViewStore,
    ViewWriter,
)
from prism_testkit.simulation.clock import ManualClock
from prism_testkit.suites._doubles import HeldCommits, Killed
from tests._scenarios import Runner as ScenarioRunner

# --- fixtures ------------------------------------------------------------------------------


@dataclass
class Env:
    transactions: Transactions
    log: Log
    kv: KeyValue
    clock: ManualClock

    def store(self, name: str = "es", **config: Any) -> EventStore:
        upcasters = config.pop("upcasters", None)
        cfg = EventSourcingConfig(name=name, **config)
        return EventStore(self.transactions, self.log, self.kv, cfg, clock=self.clock, upcasters=upcasters)


Runner = ScenarioRunner[Env]


@pytest.fixture
def scenario_subject() -> Callable[[Driver], Env]:
    return lambda d: Env(d.transactions(), d.log(), d.keyvalue(), ManualClock())


def deposit(amount: int) -> NewEvent:
    return NewEvent("Deposited", {"amount": amount})


class Counter:
    """Sum of deposits; ``applied`` counts apply calls, so snapshot use is observable."""

    snapshot_schema = 1

    def __init__(self) -> None:
        self.applied = 0

    def initial(self) -> Any:
        return {"total": 0, "count": 0}

    def apply(self, state: Any, event: RecordedEvent) -> Any:
        self.applied += 1
        return {"total": state["total"] + event.data["amount"], "count": state["count"] + 1}


# --- appends and optimistic concurrency ----------------------------------------------------


def test_appends_get_gap_free_positions_and_notifications(on_backend: Runner) -> None:
    async def scenario(env: Env) -> None:
        store = env.store()
        first = await store.append("a", [deposit(1), deposit(2)], expected_version=0)
        assert first.version == 2
        assert [e.position for e in first.events] == [1, 2]
        await store.append("b", [deposit(5)], expected_version=0)
        await store.append("a", [deposit(3)], expected_version=2)
        assert [(e.position, e.data["amount"]) for e in await store.read_stream("a")] == [(1, 1), (2, 2), (3, 3)]
        assert await store.version("a") == 3
        assert await store.version("missing") == 0
        notes = await store.read_notifications(0)
        assert [(n.offset, n.event.stream, n.event.position) for n in notes] == [
            (0, "a", 1),
            (1, "a", 2),
            (2, "b", 1),
            (3, "a", 3),
        ]
        assert await store.notifications_end() == 4

    on_backend(scenario)


def test_a_wrong_expected_version_is_a_typed_conflict_that_writes_nothing(on_backend: Runner) -> None:
    async def scenario(env: Env) -> None:
        store = env.store()
        await store.append("a", [deposit(1)], expected_version=0)
        for wrong in (0, 2, 7):
            with pytest.raises(VersionConflict) as info:
                await store.append("a", [deposit(99)], expected_version=wrong)
            assert (info.value.stream, info.value.expected, info.value.actual) == ("a", wrong, 1)
        assert [e.data["amount"] for e in await store.read_stream("a")] == [1]
        assert await store.notifications_end() == 1

    on_backend(scenario)


def test_concurrent_appends_at_one_version_have_exactly_one_winner(on_backend: Runner) -> None:
    async def scenario(env: Env) -> None:
        store = env.store()
        await store.append("a", [deposit(0)], expected_version=0)
        results = await asyncio.gather(
            *(store.append("a", [deposit(i), deposit(100 + i)], expected_version=1) for i in range(1, 6)),
            return_exceptions=True,
        )
        winners = [r for r in results if not isinstance(r, BaseException)]
        assert len(winners) == 1, results
        assert all(isinstance(r, VersionConflict) for r in results if r not in winners)
        won = winners[0].events[0].data["amount"]
        assert [e.data["amount"] for e in await store.read_stream("a")] == [0, won, 100 + won]
        stored = [n.event.data["amount"] for n in await store.read_notifications(0)]
        assert stored == [0, won, 100 + won], "a loser's events reached the notification log"

    on_backend(scenario)


def test_a_follower_never_skips_an_append_that_committed_late(on_backend: Runner) -> None:
    async def scenario(env: Env) -> None:
        held = HeldCommits(env.transactions)
        store = EventStore(held, env.log, env.kv, EventSourcingConfig(name="es"), clock=env.clock)
        held.armed = True
        late = asyncio.create_task(store.append("early-begun", [deposit(1)], expected_version=0))
        await held.reached.wait()
        await store.append("quick", [deposit(2)], expected_version=0)
        seen = await store.read_notifications(0)  # a follower reads while the first is uncommitted
        assert [n.event.stream for n in seen] == ["quick"]
        held.release.set()
        await late
        after = await store.read_notifications(len(seen))
        assert [(n.offset, n.event.stream) for n in after] == [(1, "early-begun")]

    on_backend(scenario)


@pytest.mark.parametrize(
    ("stream", "events", "expected"),
    [
        ("", [deposit(1)], 0),
        ("a\n", [deposit(1)], 0),
        ("x" * 201, [deposit(1)], 0),
        ("a", [], 0),
        ("a", deposit(1), 0),
        ("a", [NewEvent("", {})], 0),
        ("a", [NewEvent("T", {"x": float("nan")})], 0),
        ("a", [NewEvent("T", {"x": object()})], 0),
        ("a", [NewEvent("T", {1: "one"})], 0),  # type: ignore[dict-item]  # a key that is no string
        ("a", [NewEvent("T", {}, schema=2)], 0),
        ("a", [deposit(1)], -1),
        ("a", [deposit(1)], True),
        ("a", [NewEvent("T", {"blob": "x" * 100})], 0),
    ],
)
def test_bad_input_is_refused_before_anything_is_written(
    on_backend: Runner, stream: Any, events: Any, expected: Any
) -> None:
    async def scenario(env: Env) -> None:
        store = env.store(max_event_size=64)
        with pytest.raises(InvalidEvent):
            await store.append(stream, events, expected_version=expected)
        assert await store.notifications_end() == 0

    on_backend(scenario)


def test_the_store_has_no_way_to_change_or_remove_events() -> None:
    public = {name for name in dir(EventStore) if not name.startswith("_")}
    assert not {n for n in public if any(w in n for w in ("update", "delete", "remove", "truncate", "set"))}


def test_a_record_changed_behind_the_stores_back_is_reported(on_backend: Runner) -> None:
    async def scenario(env: Env) -> None:
        store = env.store()
        await store.append("a", [deposit(1), deposit(2)], expected_version=0)
        other = (await store.read_stream("a"))[0]
        await env.kv.put(store.config.event_key("a", 2), other.encode())  # position 1's record at 2
        with pytest.raises(CorruptStream):
            await store.read_stream("a")
        await env.kv.delete(store.config.event_key("a", 2))
        with pytest.raises(CorruptStream):
            await store.read_stream("a")

    on_backend(scenario)


# --- time travel and snapshots -------------------------------------------------------------


def test_state_at_a_version_and_at_a_point_in_time(on_backend: Runner) -> None:
    async def scenario(env: Env) -> None:
        repo = Repository(env.store(snapshot_interval=None), Counter())
        for amount, now in ((1, 10.0), (2, 20.0), (4, 30.0)):
            env.clock.now = now
            await repo.save(await repo.load("a"), [deposit(amount)])
        env.clock.now = 25.0  # a clock that went backwards: stream time still never decreases
        await repo.save(await repo.load("a"), [deposit(8)])
        assert [e.recorded_at for e in await repo.store.read_stream("a")] == [10.0, 20.0, 30.0, 30.0]
        assert (await repo.load("a", at_version=2)).state["total"] == 3
        assert (await repo.load("a", at_version=0)).state["total"] == 0
        assert (await repo.load("a", at_time=9.0)).version == 0
        assert (await repo.load("a", at_time=20.0)).state["total"] == 3
        assert (await repo.load("a", at_time=29.9)).version == 2
        assert (await repo.load("a")).state["total"] == 15
        with pytest.raises(UnknownVersion):
            await repo.load("a", at_version=5)

    on_backend(scenario)


def test_snapshot_plus_later_events_equals_full_replay(on_backend: Runner) -> None:
    async def scenario(env: Env) -> None:
        counter = Counter()
        repo = Repository(env.store(snapshot_interval=3), counter)
        for i in range(1, 11):
            env.clock.now = float(i)
            await repo.save(await repo.load("a"), [deposit(i)])
        snapshot = await repo.snapshot("a")
        assert snapshot is not None
        assert snapshot.version == 9
        assert snapshot.state == {"total": 45, "count": 9}
        counter.applied = 0
        with_snapshot = await repo.load("a")
        assert counter.applied == 1, "loading replayed events the snapshot already covers"
        assert with_snapshot == await repo.load("a", use_snapshot=False)
        # time travel to before the snapshot replays from the start
        assert (await repo.load("a", at_version=4)).state == {"total": 10, "count": 4}
        assert (await repo.load("a", at_time=5.0)).state == {"total": 15, "count": 5}

    on_backend(scenario)


def test_a_multi_event_append_across_the_interval_snapshots_the_state_after_it(on_backend: Runner) -> None:
    async def scenario(env: Env) -> None:
        repo = Repository(env.store(snapshot_interval=4), Counter())
        await repo.save(await repo.load("a"), [deposit(1)] * 3)
        assert await repo.snapshot("a") is None
        await repo.save(await repo.load("a"), [deposit(2)] * 3)
        snapshot = await repo.snapshot("a")
        assert snapshot is not None
        assert (snapshot.version, snapshot.state["total"]) == (6, 9)

    on_backend(scenario)


def test_a_snapshot_of_another_state_schema_is_ignored(on_backend: Runner) -> None:
    async def scenario(env: Env) -> None:
        store = env.store(snapshot_interval=2)
        await Repository(store, Counter()).save(await Repository(store, Counter()).load("a"), [deposit(3)] * 2)
        newer = Counter()
        newer.snapshot_schema = 2
        repo = Repository(store, newer)
        assert await repo.snapshot("a") is None
        assert (await repo.load("a")).state == {"total": 6, "count": 2}
        assert newer.applied == 2

    on_backend(scenario)


def test_execute_retries_a_conflict_against_fresh_state(on_backend: Runner) -> None:
    async def scenario(env: Env) -> None:
        repo = Repository(env.store(), Counter())
        load = repo.load
        interfered = False

        async def load_then_someone_appends(stream: str, **kwargs: Any) -> Any:
            nonlocal interfered
            loaded = await load(stream, **kwargs)
            if not interfered:  # another writer appends between our load and our save
                interfered = True
                await repo.store.append(stream, [deposit(5)], loaded.version)
            return loaded

        repo.load = load_then_someone_appends  # type: ignore[method-assign]
        decided: list[int] = []

        def decide(loaded: Any) -> list[NewEvent]:
            decided.append(loaded.state["total"])
            return [deposit(loaded.state["total"] + 1)]

        result = await repo.execute("a", decide)
        assert decided == [0, 5]
        assert result.state["total"] == 11
        assert result.version == 2
        interfered = False
        with pytest.raises(VersionConflict):
            await repo.execute("a", decide, attempts=1)

    on_backend(scenario)


# --- upcasting -----------------------------------------------------------------------------


def test_old_events_are_upcast_through_the_chain_and_stay_stored_as_written(on_backend: Runner) -> None:
    async def scenario(env: Env) -> None:
        await env.store().append("a", [NewEvent("Deposited", {"cents": 250})], 0)  # schema 1
        upcasters = Upcasters()

        @upcasters.register("Deposited", 1)
        def cents_to_amount(data: dict[str, Any]) -> dict[str, Any]:
            return {"amount": data["cents"] / 100}

        @upcasters.register("Deposited", 2)
        def add_currency(data: dict[str, Any]) -> dict[str, Any]:
            return {**data, "currency": "EUR"}

        store = env.store(upcasters=upcasters)
        await store.append("a", [NewEvent("Deposited", {"amount": 1.0, "currency": "USD"})], 1)  # schema 3
        events = await store.read_stream("a")
        assert [(e.schema, dict(e.data)) for e in events] == [
            (3, {"amount": 2.5, "currency": "EUR"}),
            (3, {"amount": 1.0, "currency": "USD"}),
        ]
        assert [n.event.data for n in await store.read_notifications(0)] == [e.data for e in events]
        raw = await env.kv.get(store.config.event_key("a", 1))
        assert raw is not None
        assert json.loads(raw)["schema"] == 1
        assert json.loads(raw)["data"] == {"cents": 250}

    on_backend(scenario)


def test_a_missing_or_failing_upcaster_is_a_typed_error(on_backend: Runner) -> None:
    async def scenario(env: Env) -> None:
        await env.store().append("a", [NewEvent("Deposited", {"cents": 1})], 0)
        gap = Upcasters()
        gap.register("Deposited", 2)(lambda data: data)  # no step from 1
        with pytest.raises(UpcastError, match="from schema 1"):
            await env.store(upcasters=gap).read_stream("a")
        failing = Upcasters()
        failing.register("Deposited", 1)(lambda data: {"amount": data["missing"]})
        with pytest.raises(UpcastError, match="failed"):
            await env.store(upcasters=failing).read_stream("a")
        with pytest.raises(EventSourcingConfigurationError):
            failing.register("Deposited", 1)(lambda data: data)

    on_backend(scenario)


# --- projections ---------------------------------------------------------------------------


def balance_handler(crash_at: set[int] | None = None) -> Any:
    """Sums deposits per stream; raises :class:`Killed` when it reaches an event whose amount
    is in ``crash_at`` (once per amount), after the writes of the events before it."""
    pending = set(crash_at or ())

    async def handle(views: ViewWriter, event: RecordedEvent) -> None:
        if event.data["amount"] in pending:
            pending.discard(event.data["amount"])
            raise Killed(event.data["amount"])
        current = await views.get(event.stream) or 0
        await views.put(event.stream, current + event.data["amount"])

    return handle


def views_of(kind: str, env: Env, prefix: str) -> ViewStore:
    if kind == "transactional":
        return TransactionalViews(env.transactions, env.kv, prefix)
    return KeyValueViews(env.kv, prefix)


@pytest.mark.parametrize("kind", ["transactional", "keyvalue"])
def test_a_projection_crashed_mid_batch_neither_double_applies_nor_skips(on_backend: Runner, kind: str) -> None:
    async def scenario(env: Env) -> None:
        store = env.store()
        for i in range(1, 8):
            await store.append(f"s{i % 2}", [deposit(i)], await store.version(f"s{i % 2}"))
        views = views_of(kind, env, "bal")
        crashing = ProjectionRunner(store, views, balance_handler(crash_at={5}), batch_size=10)
        with pytest.raises(Killed):
            await crashing.run_once()
        position = await views.position()
        assert position == 0, "the position moved past a batch that crashed"
        restarted = ProjectionRunner(store, views, balance_handler(), batch_size=3)
        assert await restarted.catch_up() == 7
        assert await views.get("s0") == 2 + 4 + 6
        assert await views.get("s1") == 1 + 3 + 5 + 7
        assert await views.position() == 7
        assert await restarted.run_once() == 0

    on_backend(scenario)


@pytest.mark.parametrize("kind", ["transactional", "keyvalue"])
def test_rebuild_from_scratch_equals_the_incremental_view_and_lag_is_observable(on_backend: Runner, kind: str) -> None:
    async def scenario(env: Env) -> None:
        store = env.store()
        incremental = ProjectionRunner(store, views_of(kind, env, "inc"), balance_handler(), batch_size=2)
        for i in range(1, 10):
            stream = f"s{i % 3}"
            await store.append(stream, [deposit(i)], await store.version(stream))
            if i % 4 == 0:
                await incremental.run_once()
        env.clock.now += 7.0
        lag = await incremental.lag()
        assert lag.events == 9 - await incremental.position()
        assert lag.events > 0
        assert lag.seconds == 7.0
        with pytest.raises(ProjectionTimeout):
            await incremental.wait_for(9, within=0.05)
        await incremental.catch_up()
        assert (await incremental.lag()).events == 0
        await incremental.wait_for(9, within=0.05)
        rebuilt = ProjectionRunner(store, views_of(kind, env, "rebuilt"), balance_handler(), batch_size=50)
        await rebuilt.catch_up()
        for stream in ("s0", "s1", "s2"):
            assert await rebuilt.views.get(stream) == await incremental.views.get(stream)
        assert await incremental.views.get("s0") == 3 + 6 + 9

    on_backend(scenario)


def test_keyvalue_views_skip_keys_an_interrupted_batch_already_wrote(on_backend: Runner) -> None:
    async def scenario(env: Env) -> None:
        store = env.store()
        for i in (1, 2, 3):
            await store.append("a", [deposit(i)], i - 1)
        views = KeyValueViews(env.kv, "bal")
        with pytest.raises(Killed):
            await ProjectionRunner(store, views, balance_handler(crash_at={3})).run_once()
        assert await views.get("a") == 3
        assert await views.position() == 0
        await ProjectionRunner(store, views, balance_handler()).catch_up()
        assert await views.get("a") == 6

    on_backend(scenario)


# --- configuration -------------------------------------------------------------------------


def test_configuration_is_checked() -> None:
    with pytest.raises(ValidationError, match="keeps every event"):
        EventSourcingConfig(retention=3600)
    assert EventSourcingConfig(retention=float("inf")).retention is None
    with pytest.raises(ValidationError):
        EventSourcingConfig(snapshot_interval=0)
    mem = open_memstore()
    with pytest.raises(EventSourcingConfigurationError):
        EventStore(mem.transactions(), mem.log(), mem.keyvalue(), {"name": "x"})  # type: ignore[arg-type]


def test_an_append_retried_with_its_event_ids_is_written_once(on_backend: Runner) -> None:
    async def scenario(env: Env) -> None:
        store = env.store()
        events = [
            NewEvent("Deposited", {"amount": 1}, event_id="e1"),
            NewEvent("Deposited", {"amount": 2}, event_id="e2"),
        ]
        first = await store.append("a", events, 0)
        again = await store.append("a", events, 0)  # the caller never learnt that the first committed
        assert again.version == first.version == 2
        assert [e.event_id for e in again.events] == ["e1", "e2"]
        assert await store.notifications_end() == 2
        await store.append("a", [deposit(3)], 2)
        with pytest.raises(VersionConflict):  # e2 is in the stream, but not right after version 0
            await store.append("a", [NewEvent("Deposited", {"amount": 2}, event_id="e2")], 0)
        with pytest.raises(VersionConflict):
            await store.append("a", [deposit(9)], 0)  # without ids there is no telling: a conflict
        with pytest.raises(InvalidEvent, match="unique"):
            await store.append("b", [NewEvent("T", {}, event_id="x"), NewEvent("T", {}, event_id="x")], 0)
        repo = Repository(env.store(snapshot_interval=2), Counter())
        loaded = await repo.load("c")
        retried = [
            NewEvent("Deposited", {"amount": 4}, event_id="c1"),
            NewEvent("Deposited", {"amount": 5}, event_id="c2"),
        ]
        assert (await repo.save(loaded, retried)).state == {"total": 9, "count": 2}
        assert (await repo.save(loaded, retried)).state == {"total": 9, "count": 2}
        assert await repo.store.version("c") == 2

    on_backend(scenario)
