"""Tiered storage under faults: puts, gets, deletes, clock advances, migrator passes, migrator
passes killed after any mutation, puts racing a migration between any two of its steps,
garbage collection, and the nemesis (kill / restart / proxy faults) on the tier and reference
servers.

The faults its guarantee speaks of, and the rules that inject them:

- a migrator process dying after any of its mutations (``migrator_dies``), and a client's put
  landing between two steps of a migration (``put_during_migration``): a migration half done;
- a server kill or pause of a tier or of the reference store (``kill_and_restart``, ``pause`` /
  ``resume``, from :class:`~prism_testkit.stateful.nemesis.NemesisRules`, where the backend is a
  server the harness controls);
- proxy faults (``latency``, ``reset_connections``, ``partition``, ``heal``, where the backend
  is networked): writes of unknown outcome;
- the clock jumping forward (``time_passes``, and every migrator pass): age rules, the copy
  freshness limit and the collector's grace; and past the grace while a put is half done, its
  copy written but the reference not yet switched, with garbage collected right then
  (``collect_during_put``);
- a copy lost from its tier behind the pattern's back (``lose_copy``): the copy the reference
  names is removed from the tier directly.

Every read is compared with a model (per key, the values it may hold: one after an
acknowledged write, several while a write's outcome is unknown). After ``lose_copy`` the
key's model holds "reported missing": the pattern's typed
:class:`~prism_testkit.patterns.tiered_storage.CopyMissing` is then the right answer (counted
as ``reported-missing``), until a put or delete of the key replaces it. The checker names
what it finds: ``lost`` (an acknowledged value reads as absent, or its copy is gone though
nothing removed it), ``silently-absent`` (a value whose copy was lost reads as absent, as if
the key had never been written: the loss passes unnoticed), ``stale`` (an older value of the
key comes back), ``resurrected`` (a deleted key reads a value again), ``unexpected`` (a value
never written), ``orphan`` (a copy no reference names survives garbage collection) and
``missing-copy`` (a live key without exactly one copy, but for the copies lost on purpose). At
the end every fault is healed, every key is read, garbage is collected with no grace and the
tiers are counted. A key whose final read found its copy gone is judged ``lost`` there, once:
when a failover its backend does not promise to survive excuses that loss, the copy count does
not judge it again (:func:`._tiered.missing_copies`). A migrator that removes the old copy
before switching the reference, or switches without compare-and-set, and a store that reads a
lost copy as an absent key, are caught here (tests/mutants).
"""

from __future__ import annotations

import contextlib
import itertools
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import rule

from prism_testkit import PrismEnv, Slot, prism_suite
from prism_testkit.patterns.tiered_storage import CopyMissing, GarbageCollector, Migrator, TieredStorage
from prism_testkit.simulation.clock import ManualClock
from prism_testkit.stateful.checkers import Anomaly, Verdict, suite_verdict
from prism_testkit.stateful.history import OpType
from prism_testkit.stateful.machine import FaultMachine
from prism_testkit.stateful.runner import StatefulRun

from ._doubles import Killed
from ._tiered import (
    DAY,
    MISSING,
    START,
    build_store,
    copy_count,
    lost_where,
    missing_copies,
    namespaced_config,
    read_again,
    read_anomaly,
)
from ._tiered_faults import StepFault, after_first_write, faulty_store

pytestmark = prism_suite(
    "stateful_tiered_storage",
    hot=Slot.needs("keyvalue", "keyvalue.scan"),
    cold=Slot.needs("objects"),
    reference=Slot.needs("keyvalue", "keyvalue.cas", "keyvalue.scan"),
)

KEYS = ("a", "b", "c")
SLOTS = ("hot", "cold", "reference")
GC_GRACE = 3600.0
MIGRATOR_INTERVAL = 3600.0  # every pass runs this much later than the previous step: hot values are due
SETTINGS: dict[str, Any] = {
    "tiers": {"hot": {"capacity": 120}, "cold": {}},
    "rules": [
        {"condition": "access_count > 1 AND tier != hot", "action": "promote_to_hot"},
        {"condition": "age > 30m AND tier == hot", "action": "demote_to_cold"},
    ],
    "stream_threshold": 64,  # long values stream into the cold tier
    "chunk_size": 32,
    "gc_grace": GC_GRACE,
}


class TieredMachine(FaultMachine):
    def __init__(self, run: StatefulRun) -> None:
        super().__init__(run, SLOTS)
        self.clock = ManualClock(START)
        self.config = namespaced_config(self.ns, **SETTINGS)
        self.numbers = itertools.count()
        self.possible: dict[str, set[str | None]] = {key: {None} for key in KEYS}
        self.unsettled: dict[str, set[str | None]] = {key: set() for key in KEYS}  # outcomes still in flight
        self.racers = 0  # puts raced against a migrator pass, each its own process
        self.written: dict[str, list[str]] = {key: [] for key in KEYS}
        self.found: dict[str, list[Anomaly]] = {}
        self.reads = 0
        self.copies_lost = 0  # copies lose_copy removed
        self.migrator_deaths = 0  # migrator passes that died (not every pass reaches its step)
        self.collections_during_puts = 0
        self.reported_missing = 0  # reads that raised CopyMissing where a copy was lost
        self.missing_at_end: set[str] = set()  # keys whose final read rightly reported a lost copy
        self.lost_at_end: set[str] = set()  # keys whose final read found a copy gone, judged lost
        self.last_lost: dict[str, str | None] = {}  # what a key's lost read returned, until it is written
        self.missing_in: dict[str, str] = {}  # the tier whose copy a key's last read found missing
        self.loop(self.store().prepare())

    # -- plumbing ---------------------------------------------------------------------------

    def store(self, *, settled: bool = False) -> TieredStorage:
        drivers = {slot: self.env.driver(slot) if settled else self.client(slot) for slot in SLOTS}
        return build_store(drivers, drivers["reference"], self.config, self.clock)

    def value_for(self, key: str) -> str:
        value = f"{key}:{next(self.numbers)}"
        self.written[key].append(value)
        return value

    @staticmethod
    def payload(value: str, long: bool) -> bytes:
        """The bytes stored: long ones stream into the cold tier; the padding is not identity."""
        return (value + ("." * 100 if long else "")).encode()

    def _wrote(self, key: str, value: str | None, acknowledged: bool) -> None:
        self.last_lost.pop(key, None)
        if acknowledged:
            self.possible[key] = {value} | (self.unsettled[key] if self.recorded.strays else set())
        else:
            self.unsettled[key].add(value)
            self.possible[key].add(value)

    def _put(self, store: TieredStorage, key: str, long: bool) -> None:
        value = self.value_for(key)
        outcome = self.attempt("client", "put", lambda: store.put(key, self.payload(value, long)), key=key, value=value)
        if outcome.completed:
            outcome.handle.ok()
        self._wrote(key, value, outcome.completed)

    def _judge_read(self, key: str, got: str | None) -> str | None:
        """The anomaly's name, recorded, or None for a right answer."""
        self.reads += 1
        allowed = self.possible[key]
        name = read_anomaly(got, allowed, self.written[key])
        if name is None:
            if got == MISSING:
                self.reported_missing += 1
            if not self.recorded.strays:
                self.possible[key] = {got}
            return None
        expected = " or ".join(sorted(repr(v) for v in allowed))
        # One event, one verdict: the same loss read again (nothing written since) follows the first.
        # the slots that may have lost it: a failover of another's backend excuses nothing
        facts = (
            {**read_again(self.last_lost, key, got), **lost_where(got, self.missing_in.get(key))}
            if name == "lost"
            else {}
        )
        if name == "lost":
            self.last_lost[key] = got
        self._anomaly(name, key, f"key {key!r} read {got!r}, expected {expected}", **facts)
        return name

    def _anomaly(self, name: str, key: str, message: str, **facts: Any) -> None:
        witness = self.history.filter(lambda op: op.key == key or op.process in ("migrator", "nemesis", "gc"))
        self.found.setdefault(name, []).append(Anomaly(name, message, witness, {"key": key, **facts}))

    async def _read(self, store: TieredStorage, key: str) -> str | None:
        try:
            value = await store.get(key)
        except CopyMissing as exc:
            self.missing_in[key] = exc.tier
            return MISSING
        return None if value is None else value.decode().rstrip(".")

    # -- clients ----------------------------------------------------------------------------

    @rule(key=st.sampled_from(KEYS), long=st.booleans())
    def put(self, key: str, long: bool) -> None:
        self._put(self.store(), key, long)

    @rule(key=st.sampled_from(KEYS))
    def get(self, key: str) -> None:
        store = self.store()
        outcome = self.attempt("client", "get", lambda: self._read(store, key), key=key)
        if outcome.completed:
            outcome.handle.ok(value=outcome.result)
            self._judge_read(key, outcome.result)

    @rule(key=st.sampled_from(KEYS))
    def delete(self, key: str) -> None:
        store = self.store()
        outcome = self.attempt("client", "delete", lambda: store.delete(key), key=key)
        if outcome.completed:
            outcome.handle.ok()
        self._wrote(key, None, outcome.completed)

    @rule(seconds=st.sampled_from([60.0, DAY + 1, GC_GRACE + 1]))
    def time_passes(self, seconds: float) -> None:
        self.clock.advance(seconds)

    # -- nemesis beyond the servers' ---------------------------------------------------------

    @rule(key=st.sampled_from(KEYS))
    def lose_copy(self, key: str) -> None:
        """The copy that ``key``'s reference names is removed from its tier directly, behind
        the pattern's back (a tier that lost data, an operator's cleanup). Only for a key whose
        value is known (one acknowledged value, nothing in flight); otherwise a no-op (that
        depends on timing: no precondition). Reads must then raise ``CopyMissing``."""
        (value,) = self.possible[key] if len(self.possible[key]) == 1 else (None,)
        if self.recorded.strays or value is None or value == MISSING:
            return
        store = self.store(settled=True)  # the tier itself, never through the proxy

        async def remove() -> dict[str, str] | None:
            _, reference = await store.load(key)
            if reference is None or reference.expired_marker:
                return None  # nothing to lose: the next read will say what became of the value
            tier, name = store.tier(reference.tier), store.copy_name(reference.tier, key, reference.copy)
            if await tier.read(name) is None:
                # Already gone, and not by this rule: the pattern lost it. Taking the blame here
                # would let the next read's CopyMissing pass (a masked migrator bug).
                return None
            await tier.remove(name)
            return {"tier": reference.tier, "copy": reference.copy}

        handle = self.history.invoke("nemesis", "lose-copy", key, value)
        try:
            removed = self.bounded(remove())
        except Exception as exc:  # a paused or restarting server: the copy may be gone or not
            handle.info(exc)
            self.possible[key].add(MISSING)
            self.env.faults["lose-copy"] += 1
            return
        handle.ok(value=removed)
        if removed is not None:
            self.copies_lost += 1
            self.possible[key] = {MISSING}
            self.last_lost.pop(key, None)
            self.env.faults["lose-copy"] += 1  # the report row's count of what it survived

    # -- background jobs --------------------------------------------------------------------

    @rule()
    def migrate(self) -> None:
        self.clock.advance(MIGRATOR_INTERVAL)
        store = self.store()
        outcome = self.attempt("migrator", "pass", lambda: Migrator(store).run_once())
        if outcome.completed:
            outcome.handle.ok(value=outcome.result)

    @rule(step=st.integers(0, 3))
    def migrator_dies(self, step: int) -> None:
        """A migrator pass whose process dies before its ``step``-th mutation (copy write,
        reference switch, copy removal...); a new migrator takes over on the next pass."""
        self.clock.advance(MIGRATOR_INTERVAL)
        store = faulty_store(self.store(), StepFault(step))

        async def dies() -> None:
            try:
                await Migrator(store).run_once()
            except Killed:
                self.migrator_deaths += 1

        outcome = self.attempt("migrator", "crash", dies, value=step)
        if outcome.completed:
            outcome.handle.ok()

    @rule(key=st.sampled_from(KEYS), step=st.integers(0, 2), long=st.booleans())
    def put_during_migration(self, key: str, step: int, long: bool) -> None:
        """A migrator pass with a client's put just before its ``step``-th mutation, of the key
        the pass moves first (``key`` when it moves none): steps 0-2 race that key's copy,
        switch and removal."""
        self.clock.advance(MIGRATOR_INTERVAL)
        store = self.store()
        with contextlib.suppress(Exception):  # planning is only aiming; a fault here is fine
            moves = self.bounded(Migrator(store).plan())
            key = moves[0].key if moves else key

        self.racers += 1
        racer = f"racer-{self.racers}"  # a pass abandoned mid-put leaves it in flight: the next race is another process

        async def racing_put() -> None:
            value = self.value_for(key)
            # Maybe written from its invoke on: a pass that outlives its bound is abandoned with
            # this put still in flight, and a read may see its value.
            self._wrote(key, value, False)
            handle = self.history.invoke(racer, "put", key, value)
            try:
                await store.put(key, self.payload(value, long))
            except Exception as exc:
                handle.info(exc)
                if not self.faulted:
                    raise
                return
            handle.ok()
            self.unsettled[key].discard(value)  # settled: acknowledged
            self._wrote(key, value, True)

        async def interleaved() -> None:
            await Migrator(faulty_store(store, StepFault(step, racing_put))).run_once()

        outcome = self.attempt("migrator", "pass+put", interleaved, value=(key, step))
        if outcome.completed:
            outcome.handle.ok()

    @rule(key=st.sampled_from(KEYS), long=st.booleans())
    def collect_during_put(self, key: str, long: bool) -> None:
        """A put whose copy is written, then the clock jumps past the collector's grace and
        garbage is collected, all before the put switches the reference: the collector takes
        the put's copy for an orphan, so the put must see that its copy may be gone and write a
        new one (a clock jump while a write is half done)."""
        if self.recorded.strays:  # a write in flight may own an unreferenced copy (timing: no precondition)
            return
        store = self.store()

        async def jump_and_collect() -> None:
            self.clock.advance(GC_GRACE + 1)
            handle = self.history.invoke("gc", "collect-during-put", key)
            # The store made above: looking one up here would run the loop inside itself
            # (a proxied slot's client is fetched through the loop).
            handle.ok(value=await GarbageCollector(store).collect())
            self.collections_during_puts += 1

        self._put(after_first_write(store, jump_and_collect), key, long)

    @rule()
    def collect_garbage(self) -> None:
        if self.recorded.strays:  # a write in flight may own an unreferenced copy (timing: no precondition)
            return
        store = self.store()
        outcome = self.attempt("gc", "collect", lambda: GarbageCollector(store).collect())
        if outcome.completed:
            outcome.handle.ok(value=outcome.result)

    # -- judging ----------------------------------------------------------------------------

    def check(self) -> tuple[list[Verdict], str]:
        self.recovering(self._final_reads)
        self.recovering(self._collect_and_count)
        counts = {
            "reads": self.reads,
            "writes": sum(len(v) for v in self.written.values()),
            "copies-lost": self.copies_lost,
            "reported-missing": self.reported_missing,
        }
        return [suite_verdict("tiered-storage", self.found, counts)], f"tiered storage {self.config.reference_prefix}"

    async def _final_reads(self) -> None:
        store = self.store(settled=True)
        for key in KEYS:
            handle = self.history.invoke("checker", "get", key)
            got = await self._read(store, key)
            handle.ok(value=got)
            if got == MISSING and MISSING in self.possible[key]:
                self.missing_at_end.add(key)  # its reference stays, naming no copy
            if self._judge_read(key, got) == "lost" and got == MISSING:
                self.lost_at_end.add(key)  # its reference stays too: the copy count must not judge it again

    async def _collect_and_count(self) -> None:
        store = self.store(settled=True)
        await GarbageCollector(store).collect(grace=0)
        orphans = await GarbageCollector(store).orphans(grace=0)
        for tier, name in orphans:
            self._anomaly("orphan", name, f"{tier} copy {name!r} survived garbage collection")
        copies = await copy_count(store)
        live = 0
        for key in KEYS:
            _, reference = await store.load(key)
            if reference is not None and not reference.expired_marker:
                live += 1
        # One event, one verdict: a key whose final read was judged lost (a loss a failover of
        # its backend may excuse) is not counted again as a missing copy of its own.
        if (missing := missing_copies(live, copies, self.missing_at_end, self.lost_at_end)) is not None:
            message, facts = missing
            self._anomaly("missing-copy", "*", message, **facts)
        for key in KEYS:
            await store.delete(key)
        await GarbageCollector(store).collect(grace=0)


def test_every_read_matches_the_model_under_migrator_crashes_and_faults(
    prism_env: PrismEnv, request: pytest.FixtureRequest
) -> None:
    run = StatefulRun(prism_env, request)
    run.execute(lambda: TieredMachine(run))


def test_a_copy_lost_behind_the_patterns_back_is_reported_missing(
    prism_env: PrismEnv, request: pytest.FixtureRequest
) -> None:
    """``lose_copy``, step by step: an acknowledged value's copy is removed from its tier
    behind the pattern's back, and a read must raise ``CopyMissing`` (reported missing), not
    read as a key never written. Fails if the rule does not fire."""
    run = StatefulRun(prism_env, request)
    machine = TieredMachine(run)
    machine.put("a", long=True)
    machine.lose_copy("a")
    assert machine.copies_lost == 1, "lose_copy removed no copy"
    machine.get("a")
    assert machine.reported_missing == 1
    assert not machine.found, machine.found
    machine.put("a", long=False)  # a new value replaces the lost one
    machine.get("a")
    assert machine.reported_missing == 1
    machine.teardown()
    assert run.judged == 1


@pytest.mark.parametrize("step", range(3))
def test_a_migrator_dying_before_any_of_its_mutations_loses_nothing(
    prism_env: PrismEnv, request: pytest.FixtureRequest, step: int
) -> None:
    """``migrator_dies`` at each of its points, step by step: a hot value due to move, a pass
    that dies before its ``step``-th mutation (of the three a move makes), then a read.
    Whatever order a migrator writes, switches and removes in, the value must survive. The
    search reaches these too, but with a dozen short examples over many rules, not every
    time. Fails if the pass does not die."""
    run = StatefulRun(prism_env, request)
    machine = TieredMachine(run)
    machine.put("a", long=False)
    machine.migrator_dies(step)
    assert machine.migrator_deaths == 1, "the migrator pass did not die"
    machine.get("a")
    machine.teardown()
    assert run.judged == 1


@pytest.mark.parametrize("step", range(3))
def test_a_put_between_two_steps_of_a_migration_wins(
    prism_env: PrismEnv, request: pytest.FixtureRequest, step: int
) -> None:
    """``put_during_migration``, step by step: a hot value due to move, and a put of its key
    just before the migration's ``step``-th mutation; the put's value must be what the key
    reads after. Fails if the racing put never happens."""
    run = StatefulRun(prism_env, request)
    machine = TieredMachine(run)
    machine.put("a", long=False)
    machine.put_during_migration("a", step, long=False)
    puts = [op for op in machine.history if op.f == "put" and op.key == "a" and op.type is OpType.OK]
    assert len(puts) == 2, "the racing put did not happen"
    machine.get("a")
    machine.teardown()
    assert run.judged == 1


def test_a_put_whose_copy_is_collected_mid_write_writes_it_again(
    prism_env: PrismEnv, request: pytest.FixtureRequest
) -> None:
    """``collect_during_put``, step by step: the clock jumps past the collector's grace between
    a put's copy write and its reference switch, the collector removes the copy, and the put
    must still leave its value readable. Fails if the collection never runs mid-put."""
    run = StatefulRun(prism_env, request)
    machine = TieredMachine(run)
    machine.collect_during_put("a", long=False)
    assert machine.collections_during_puts == 1, "no garbage was collected during the put"
    machine.get("a")
    assert not machine.found, machine.found
    machine.teardown()
    assert run.judged == 1
