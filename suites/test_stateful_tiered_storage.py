"""Tiered storage under faults: puts, gets, deletes, clock advances, migrator passes, migrator
passes killed after any mutation, puts racing a migration between any two of its steps,
garbage collection, and the nemesis (kill / restart / proxy faults) on the tier and reference
servers.

Every read is compared with a model (per key, the values it may hold: one after an
acknowledged write, several while a write's outcome is unknown). The checker names what it
finds: ``lost`` (an acknowledged value reads as absent, or its copy is gone), ``stale`` (an
older value of the key comes back), ``resurrected`` (a deleted key reads a value again),
``unexpected`` (a value never written), ``orphan`` (a copy no reference names survives garbage
collection) and ``missing-copy`` (a live key without exactly one copy). At the end every fault
is healed, every key is read, garbage is collected with no grace and the tiers are counted.
A migrator that removes the old copy before switching the reference, or switches without
compare-and-set, is caught here (tests/mutants).
"""

from __future__ import annotations

import contextlib
import itertools
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import rule
from prism_testkit.patterns.tiered_storage import CopyMissing, GarbageCollector, Migrator, TieredStorage

from prism_testkit import PrismEnv, Slot, prism_suite
from prism_testkit.jepsen.checkers import Anomaly, Verdict, suite_verdict
from prism_testkit.jepsen.machine import FaultMachine
from prism_testkit.jepsen.runner import StatefulRun

from ._tiered import DAY, TestClock, build_store, copy_count, namespaced_config
from ._tiered_faults import Killed, StepFault, faulty_store

pytestmark = prism_suite(
    "stateful_tiered_storage",
    hot=Slot.needs("keyvalue", "keyvalue.scan"),
    cold=Slot.needs("objects"),
    reference=Slot.needs("keyvalue", "keyvalue.cas", "keyvalue.scan"),
)

KEYS = ("a", "b", "c")
SLOTS = ("hot", "cold", "reference")
MISSING = "<copy missing>"  # a read whose reference named a copy that was gone
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
        self.clock = TestClock()
        self.config = namespaced_config(self.ns, **SETTINGS)
        self.numbers = itertools.count()
        self.possible: dict[str, set[str | None]] = {key: {None} for key in KEYS}
        self.unsettled: dict[str, set[str | None]] = {key: set() for key in KEYS}  # outcomes still in flight
        self.written: dict[str, list[str]] = {key: [] for key in KEYS}
        self.found: dict[str, list[Anomaly]] = {}
        self.reads = 0
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

    def _judge_read(self, key: str, got: str | None) -> None:
        self.reads += 1
        allowed = self.possible[key]
        if got in allowed:
            if not self.recorded.strays:
                self.possible[key] = {got}
            return
        if got is None or got == MISSING:
            name = "lost"
        elif got in self.written[key]:
            name = "resurrected" if allowed == {None} else "stale"
        else:
            name = "unexpected"
        expected = " or ".join(sorted(repr(v) for v in allowed))
        self._anomaly(name, key, f"key {key!r} read {got!r}, expected {expected}")

    def _anomaly(self, name: str, key: str, message: str) -> None:
        witness = self.history.filter(lambda op: op.key == key or op.process in ("migrator", "nemesis", "gc"))
        self.found.setdefault(name, []).append(Anomaly(name, message, witness, {"key": key}))

    @staticmethod
    async def _read(store: TieredStorage, key: str) -> str | None:
        try:
            value = await store.get(key)
        except CopyMissing:
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
            with contextlib.suppress(Killed):
                await Migrator(store).run_once()

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

        async def racing_put() -> None:
            value = self.value_for(key)
            handle = self.history.invoke("client", "put", key, value)
            try:
                await store.put(key, self.payload(value, long))
            except Exception as exc:
                handle.info(exc)
                self._wrote(key, value, False)
                if not self.faulted:
                    raise
                return
            handle.ok()
            self._wrote(key, value, True)

        async def interleaved() -> None:
            await Migrator(faulty_store(store, StepFault(step, racing_put))).run_once()

        outcome = self.attempt("migrator", "pass+put", interleaved, value=(key, step))
        if outcome.completed:
            outcome.handle.ok()

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
        counts = {"reads": self.reads, "writes": sum(len(v) for v in self.written.values())}
        return [suite_verdict("tiered-storage", self.found, counts)], f"tiered storage {self.config.reference_prefix}"

    async def _final_reads(self) -> None:
        store = self.store(settled=True)
        for key in KEYS:
            handle = self.history.invoke("checker", "get", key)
            got = await self._read(store, key)
            handle.ok(value=got)
            self._judge_read(key, got)

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
        if sum(copies.values()) != live:
            self._anomaly("missing-copy", "*", f"{live} live keys but copies per tier {copies} after GC")
        for key in KEYS:
            await store.delete(key)
        await GarbageCollector(store).collect(grace=0)


def test_every_read_matches_the_model_under_migrator_crashes_and_faults(
    prism_env: PrismEnv, request: pytest.FixtureRequest
) -> None:
    run = StatefulRun(prism_env, request)
    run.execute(lambda: TieredMachine(run))
