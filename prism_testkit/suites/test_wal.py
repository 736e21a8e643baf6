"""Acceptance suite of the write-ahead log (RFC-009 §2, RFC-014 pattern 1).

Runs once per (durable log x key-value target) combination: ``log`` holds the WAL, its
checkpoint (group offset) and dead-letter log; ``target`` is where mutations are applied, through
its transactions when it has them (value and applied offset in one transaction), else guarded by
the per-key applied offset.

What it guarantees: every acknowledged mutation is applied exactly once in effect, also when the
applier is killed mid-batch and another resumes from the checkpoint, and when the log's server
is killed and restarted (an embedded log is closed and reopened; its crash durability is proved
in tests/test_embedded_crash.py); reads see acknowledged writes before they are applied; each
key's mutations are applied in log order; a poison mutation reaches the dead-letter log after
its attempts while the other keys keep flowing; keep-latest compaction replays to the same
state. A log declared not durable is refused, on every backend with a log (durable or not).
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

import prism_testkit.simulation.clock as clocks
from prism_testkit import Capability, Driver, KeyValue, PrismEnv, Slot, Transactions, patience, prism_suite
from prism_testkit.isolation import Namespace
from prism_testkit.patterns.wal import (
    HEADER_ERROR,
    HEADER_SOURCE_OFFSET,
    Clock,
    LogDurability,
    Mutation,
    MutationDeadLettered,
    NonDurableLog,
    Transform,
    WalApplier,
    WalConfig,
    WriteAheadLog,
    compact_keep_latest,
    replay,
)
from prism_testkit.simulation.clock import ManualClock

from ._applier_faults import DyingTarget, ValueFuse
from ._doubles import Killed
from ._helpers import gather_all, prism_settings

pytestmark = prism_suite("wal", log=Slot.needs("log", durable=True), target=Slot.needs("keyvalue"))

KEYS = 4


def fast() -> dict[str, float]:
    """Retries and batches at the machine's poll cadence (handed over when a rig is built)."""
    return {
        "backoff_initial": patience.handed("poll"),
        "backoff_max": patience.handed("poll") * 2.5,
        "checkpoint_interval": 0.0,
        "batch_timeout": patience.handed("poll") * 2.5,
    }


# --- the system under test -----------------------------------------------------------------


@dataclass
class Applies:
    """Every committed apply, in order: (offset, key)."""

    seen: list[tuple[int, str]] = field(default_factory=list)

    def __call__(self, offset: int, mutation: Mutation) -> None:
        self.seen.append((offset, mutation.key))

    @property
    def offsets(self) -> list[int]:
        return [offset for offset, _ in self.seen]

    def doubled(self) -> list[int]:
        offsets = self.offsets
        return sorted({o for o in offsets if offsets.count(o) > 1})


@dataclass
class WalStack:
    """A WAL over the log slot and its appliers onto the target slot, with every apply they
    committed."""

    prism_env: PrismEnv
    ns: Namespace
    config: WalConfig
    applies: Applies = field(default_factory=Applies)

    @property
    def log_driver(self) -> Driver:
        return self.prism_env.driver("log")

    @property
    def target(self) -> KeyValue:
        return self.prism_env.driver("target").keyvalue()

    @property
    def transactions(self) -> Transactions | None:
        driver = self.prism_env.driver("target")
        return driver.transactions() if driver.supports(Capability.TRANSACTIONS) else None

    @property
    def log_transactions(self) -> Transactions | None:
        """The log store's transactions: concurrent writes are group-committed through them."""
        driver = self.log_driver
        return driver.transactions() if driver.supports(Capability.TRANSACTIONS) else None

    def key(self, i: int) -> str:
        return self.ns.name(f"k{i}")

    def wal(
        self, *, transform: Transform | None = None, clock: Clock = clocks.wall, **changes: object
    ) -> WriteAheadLog:
        config = self.config.model_copy(update=changes) if changes else self.config
        return WriteAheadLog(
            self.log_driver.log(),
            self.target,
            config,
            durability=LogDurability.of(self.prism_env.spec("log")),
            transactions=self.transactions,
            log_transactions=self.log_transactions,
            transform=transform,
            clock=clock,
        )

    def applier(self, target: DyingTarget | None = None, **kwargs: object) -> WalApplier:
        return WalApplier(
            self.log_driver.log(),
            target or self.target,
            self.config,
            transactions=self.transactions if target is None else target.transactions,
            on_applied=self.applies,
            **kwargs,  # type: ignore[arg-type]
        )

    async def state(self, keys: list[str]) -> dict[str, bytes | None]:
        return {key: await self.target.get(key) for key in keys}


@asynccontextmanager
async def rigged(prism_env: PrismEnv, ns: Namespace, **config: object) -> AsyncIterator[WalStack]:
    settings = {**fast(), **config}
    yield WalStack(prism_env, ns, WalConfig(log=ns.name("wal"), **settings))  # type: ignore[arg-type]


def expected_state(writes: Sequence[tuple[str, bytes | None]]) -> dict[str, bytes | None]:
    state: dict[str, bytes | None] = {}
    for key, value in writes:
        state[key] = value
    return state


OPS = st.lists(st.tuples(st.integers(0, KEYS - 1), st.none() | st.binary(min_size=1, max_size=24)), max_size=25)


# --- exactly once, read-your-writes, order -------------------------------------------------


@prism_settings
@given(ops=OPS)
async def test_every_acknowledged_mutation_is_applied_exactly_once_in_effect(
    prism_env: PrismEnv, ops: list[tuple[int, bytes | None]]
) -> None:
    async with prism_env.example() as ns, rigged(prism_env, ns) as rig:
        wal = rig.wal()
        receipts, writes = [], []
        for i, value in ops:
            key = rig.key(i)
            receipts.append(await (wal.delete(key) if value is None else wal.put(key, value)))
            writes.append((key, value))
            assert await wal.get(key) == value, "read-your-writes: an acknowledged write is not visible"
        assert receipts == list(range(len(ops))), "receipts are the log offsets, one per mutation"
        await rig.applier().drain()
        assert rig.applies.offsets == receipts, "applied out of log order, doubled or lost"
        keys = [rig.key(i) for i in range(KEYS)]
        assert await rig.state(keys) == {k: expected_state(writes).get(k) for k in keys}
        assert (await wal.gauges()).unapplied_entries == 0
        # A replay of the whole log (checkpoint lost) changes nothing and applies nothing.
        await rig.log_driver.log().commit(rig.config.log, rig.config.group, 0)
        await rig.applier().drain()
        assert rig.applies.offsets == receipts, "a replay applied something twice"
    assert await prism_env.leftovers(ns) == {}


async def test_reads_see_unapplied_writes_then_the_target(prism_env: PrismEnv) -> None:
    async with rigged(prism_env, prism_env.ns) as rig:
        wal = rig.wal()
        key = rig.key(0)
        await rig.target.put(key, b"before")
        assert await wal.get(key) == b"before"
        await wal.put(key, b"one")
        await wal.put(key, b"two")
        assert await rig.target.get(key) == b"before", "async mode applied before the applier ran"
        assert await wal.get(key) == b"two"
        gauges = await wal.gauges()
        assert gauges.unapplied_entries == 2
        assert gauges.lag_seconds >= 0.0
        await wal.delete(key)
        assert await wal.get(key) is None
        await rig.applier().drain()
        assert await rig.target.get(key) is None
        await wal.put(key, b"three")
        sync = rig.wal(apply_mode="sync")
        await sync.put(rig.key(1), b"synced")
        assert await rig.target.get(rig.key(1)) == b"synced", "sync mode returned before the apply"
        assert await rig.target.get(key) == b"three", "sync apply skipped an earlier mutation"


async def test_concurrent_writers_keep_each_keys_order(prism_env: PrismEnv) -> None:
    async with rigged(prism_env, prism_env.ns, batch_size=7) as rig:
        wal = rig.wal()
        receipts: dict[int, tuple[str, bytes]] = {}

        async def writer(w: int) -> None:
            for n in range(10):
                key, value = rig.key((w + n) % KEYS), f"w{w}-{n}".encode()
                receipts[await wal.put(key, value)] = (key, value)

        applier = rig.applier()
        stop = asyncio.Event()
        running = asyncio.ensure_future(applier.run(stop))
        try:
            await gather_all(*(writer(w) for w in range(6)))
            await applier.drain()
        finally:
            stop.set()
            await running
        assert sorted(rig.applies.offsets) == sorted(receipts), "lost or doubled mutations"
        assert len(receipts) == 60, "two writers got the same receipt"
        if wal.group_commit is not None:  # six writers arrive together: they share a transaction
            assert wal.group_commit.groups > 0
        for key in {k for k, _ in receipts.values()}:
            applied = [o for o, k in rig.applies.seen if k == key]
            assert applied == sorted(applied), f"key {key!r} applied out of log order: {applied}"
            latest = max(o for o, (k, _) in receipts.items() if k == key)
            assert await rig.target.get(key) == receipts[latest][1]


# --- crashes -------------------------------------------------------------------------------


@pytest.mark.parametrize("dies_at", [0, 3, 9])
async def test_an_applier_killed_mid_batch_resumes_with_nothing_lost_or_doubled(
    prism_env: PrismEnv, dies_at: int
) -> None:
    async with rigged(prism_env, prism_env.ns, batch_size=5) as rig:
        wal = rig.wal()
        writes = []
        for n in range(12):
            key = rig.key(n % KEYS)
            await wal.put(key, f"v{n}".encode())
            writes.append((key, f"v{n}".encode()))
        fuse = ValueFuse(dies_at, rig.config.guard_key(""))
        doomed = rig.applier(DyingTarget(rig.target, fuse, rig.transactions))
        with pytest.raises(Killed):
            await doomed.drain()
        # Without transactions every write lands on its own; with them a batch commits whole.
        batch = rig.config.batch_size
        survived = dies_at if rig.transactions is None else dies_at // batch * batch
        assert rig.applies.offsets == list(range(survived)), "the killed applier applied past its death"
        await rig.applier().drain()
        assert rig.applies.doubled() == [], "a mutation was applied twice"
        assert rig.applies.offsets == list(range(12)), "lost or reordered mutations after the resume"
        keys = [rig.key(i) for i in range(KEYS)]
        assert await rig.state(keys) == expected_state(writes)


async def test_the_log_server_killed_and_restarted_loses_no_acknowledged_mutation(prism_env: PrismEnv) -> None:
    kill = prism_env.control("log") is not None  # embedded: closed and reopened (crash: test_embedded_crash)
    async with rigged(prism_env, prism_env.ns, batch_size=4) as rig:
        wal = rig.wal()
        writes = []
        for n in range(16):
            key = rig.key(n % KEYS)
            await wal.put(key, f"v{n}".encode())
            writes.append((key, f"v{n}".encode()))
            if n == 7:
                await rig.applier().drain()  # half applied and checkpointed before the fault
        await prism_env.restart("log", kill=kill)
        after = rig.wal()  # new clients: the old connections died with the server
        assert await after.get(rig.key(3)) == b"v15", "an acknowledged, unapplied write is gone"
        assert await rig.log_driver.log().committed(rig.config.log, rig.config.group) == 8, "checkpoint lost"
        await rig.applier().drain()
        assert rig.applies.offsets == list(range(16)), "lost, doubled or reordered after the restart"
        keys = [rig.key(i) for i in range(KEYS)]
        assert await rig.state(keys) == expected_state(writes)


# --- poison, compaction --------------------------------------------------------------------


async def test_a_poison_mutation_is_dead_lettered_after_its_attempts_while_others_flow(prism_env: PrismEnv) -> None:
    async with rigged(prism_env, prism_env.ns, max_attempts=3, backoff_initial=0.05, backoff_max=1.0) as rig:
        wal = rig.wal()
        poison, other = rig.key(0), rig.key(1)
        attempts: list[float] = []

        def reject_poison(mutation: Mutation) -> Mutation:
            if mutation.value == b"poison":
                attempts.append(asyncio.get_running_loop().time())
                raise ValueError("the target refuses this value")
            return mutation

        await wal.put(poison, b"poison")
        await wal.put(poison, b"after-poison")
        for n in range(5):
            await wal.put(other, f"o{n}".encode())
        applier = rig.applier(transform=reject_poison)
        await applier.run_once(wait=0)
        assert await rig.target.get(other) == b"o4", "another key was held back by the poison mutation"
        assert await rig.target.get(poison) is None, "a later mutation overtook the failing one of its key"
        await applier.drain()
        assert len(attempts) == 3
        gaps = [later - earlier for earlier, later in itertools.pairwise(attempts)]
        assert gaps[0] >= 0.05, f"retried after {gaps[0]:.3f}s, before the first backoff (0.05s)"
        assert gaps[1] >= 0.1, f"retried after {gaps[1]:.3f}s, before the doubled backoff (0.1s)"
        assert await rig.target.get(poison) == b"after-poison"
        dead = await rig.log_driver.log().read(rig.config.dead_letter, 0)
        assert [(bytes(r.message.payload), r.message.headers[HEADER_SOURCE_OFFSET]) for r in dead] == [(b"poison", "0")]
        assert "the target refuses this value" in dead[0].message.headers[HEADER_ERROR]
        assert await rig.log_driver.log().committed(rig.config.log, rig.config.group) == 7


async def test_a_dead_lettered_mutation_fails_its_sync_write_and_is_not_dead_lettered_again_on_replay(
    prism_env: PrismEnv,
) -> None:
    async with rigged(prism_env, prism_env.ns, max_attempts=2) as rig:  # the sync write waits out one retry
        poison, other = rig.key(0), rig.key(1)

        def reject_poison(mutation: Mutation) -> Mutation:
            if mutation.value == b"poison":
                raise ValueError("the target refuses this value")
            return mutation

        wal = rig.wal(apply_mode="sync", transform=reject_poison)
        with pytest.raises(MutationDeadLettered) as caught:
            await wal.put(poison, b"poison")
        assert caught.value.offset == 0, "the sync write's error names another mutation"
        assert await wal.put(other, b"fine") == 1
        assert await rig.target.get(other) == b"fine"
        log = rig.log_driver.log()
        assert len(await log.read(rig.config.dead_letter, 0)) == 1
        # The checkpoint is lost: a replay from the start must see the poison as resolved.
        await log.commit(rig.config.log, rig.config.group, 0)
        await rig.applier(transform=reject_poison).drain()
        dead = await log.read(rig.config.dead_letter, 0)
        assert [r.message.headers[HEADER_SOURCE_OFFSET] for r in dead] == ["0"], (
            "a replay dead-lettered a mutation again that was dead-lettered already "
            f"(dead letters of offsets {[r.message.headers[HEADER_SOURCE_OFFSET] for r in dead]})"
        )


async def test_a_hybrid_write_waits_for_its_apply_within_the_sync_timeout(prism_env: PrismEnv) -> None:
    async with rigged(prism_env, prism_env.ns) as rig:
        wal = rig.wal(apply_mode="hybrid", sync_timeout=patience.handed("lease"))
        await wal.put(rig.key(0), b"v")
        assert await rig.target.get(rig.key(0)) == b"v", "a hybrid write returned before its apply (ran as async)"


async def test_retries_back_off_doubling_from_backoff_initial_on_the_applier_clock(prism_env: PrismEnv) -> None:
    async with rigged(prism_env, prism_env.ns, max_attempts=4, backoff_initial=1.0, backoff_max=10.0) as rig:
        attempts: list[float] = []
        clock = ManualClock()

        def reject_thrice(mutation: Mutation) -> Mutation:
            attempts.append(clock.now)
            if len(attempts) <= 3:
                raise ValueError("not yet")
            return mutation

        await rig.wal().put(rig.key(0), b"v")
        applier = rig.applier(transform=reject_thrice, clock=clock)
        start = clock.now
        for after, want in [(0.0, 1), (0.999, 1), (1.0, 2), (2.999, 2), (3.0, 3), (6.999, 3), (7.0, 4)]:
            clock.now = start + after
            await applier.run_once(wait=0.0)
            assert len(attempts) == want, (
                f"{after}s after the first attempt: {len(attempts)} attempts, want {want} "
                "(backoff 1s, then 2s, then 4s)"
            )
        assert await rig.target.get(rig.key(0)) == b"v"
        assert (applier.metrics.retries, applier.metrics.applied) == (3, 1), (
            f"metrics counted {applier.metrics.retries} retries and {applier.metrics.applied} applies, "
            "want 3 failed attempts retried and 1 apply"
        )


async def test_the_checkpoint_is_committed_at_most_every_checkpoint_interval(prism_env: PrismEnv) -> None:
    async with rigged(prism_env, prism_env.ns, checkpoint_interval=60.0) as rig:
        wal, log, clock = rig.wal(), rig.log_driver.log(), ManualClock()
        applier = rig.applier(clock=clock)
        await wal.put(rig.key(0), b"one")
        await applier.run_once(wait=0.0)
        assert await log.committed(rig.config.log, rig.config.group) == 1, "the first batch was not checkpointed"
        await wal.put(rig.key(0), b"two")
        clock.advance(59.0)
        await applier.run_once(wait=0.0)
        assert await rig.target.get(rig.key(0)) == b"two"
        assert await log.committed(rig.config.log, rig.config.group) == 1, (
            "the checkpoint was committed again 59s after the last one (checkpoint_interval is 60s)"
        )
        clock.advance(1.0)
        await applier.run_once(wait=0.0)
        assert await log.committed(rig.config.log, rig.config.group) == 2, "no checkpoint once the interval passed"


async def test_the_lag_gauge_is_the_age_of_the_oldest_unapplied_mutation(prism_env: PrismEnv) -> None:
    async with rigged(prism_env, prism_env.ns) as rig:
        clock = ManualClock()
        wal = rig.wal(clock=clock)
        await wal.put(rig.key(0), b"old")
        clock.advance(100.0)
        await wal.put(rig.key(1), b"new")
        clock.advance(50.0)
        gauges = await wal.gauges()
        assert gauges.unapplied_entries == 2
        assert gauges.lag_seconds == 150.0, f"lag {gauges.lag_seconds}s, but the oldest unapplied write is 150s old"
        await rig.applier().drain()
        assert (await wal.gauges()) == type(gauges)(0.0, 0), "lag or entries left after everything was applied"


@pytest.mark.parametrize("seed", [1, 2])
async def test_keep_latest_compaction_preserves_the_final_state(prism_env: PrismEnv, seed: int) -> None:
    rng = random.Random(seed)
    async with rigged(prism_env, prism_env.ns) as rig:
        wal = rig.wal()
        writes = []
        for n in range(40):
            key = rig.key(rng.randrange(KEYS))
            value = None if rng.random() < 0.2 else f"{n}".encode()
            await (wal.delete(key) if value is None else wal.put(key, value))
            writes.append((key, value))
        await wal.delete(rig.key(0))  # at least one key ends deleted: its tombstone must be kept
        writes.append((rig.key(0), None))
        log = rig.log_driver.log()
        compacted = prism_env.ns.name("compacted")
        result = await compact_keep_latest(log, rig.config.log, compacted)
        assert (result.read, result.kept) == (41, len({k for k, _ in writes}))
        keys = [rig.key(i) for i in range(KEYS)]
        for key in keys:  # an older copy of the state (a backup): the compacted log replays over it
            await rig.target.put(key, b"stale")
        await replay(log, compacted, rig.target)
        want = {k: expected_state(writes).get(k, b"stale") for k in keys}
        assert await rig.state(keys) == want, (
            "the compacted log replayed over an older state gives another state (a delete's tombstone was dropped?)"
        )


# --- refusal (every backend with a log, durable or not) ------------------------------------


@prism_suite("wal", log=Slot.needs("log"), target=Slot.needs("keyvalue"))
async def test_a_log_not_declared_durable_is_refused(prism_env: PrismEnv) -> None:
    spec = prism_env.spec("log")
    durability = LogDurability.of(spec)
    log = prism_env.driver("log").log()
    config = WalConfig(log=prism_env.ns.name("wal"))
    if spec.properties.durable:
        wal = WriteAheadLog(log, prism_env.driver("target").keyvalue(), config, durability=durability)
        assert await wal.put(prism_env.ns.name("k"), b"v") == 0
        return
    with pytest.raises(NonDurableLog, match=f"backend '{spec.name}' does not declare its log durable") as caught:
        WriteAheadLog(log, prism_env.driver("target").keyvalue(), config, durability=durability)
    assert caught.value.backend == spec.name
    assert await log.end_offset(config.log) == 0, "a refused WAL wrote to the log"
