"""Acceptance suite of tiered storage (RFC-009 §1).

Runs once per (hot x warm x cold x reference) combination: hot and warm on any key-value
backend that scans (the garbage collector lists copies), cold on any object store, the
reference store on any key-value backend with compare-and-set. What it guarantees: reads are
transparent whichever tier holds a value; the rules promote and demote on the test clock; a
tier's ttl moves values down and the last tier's ttl expires them; capacity evicts the least
recently read; large values stream into the cold tier; a migration killed at any step (or
overtaken by a put) loses nothing and never brings an older value back; the garbage collector
leaves no orphan, and nothing is left in any backend once the keys are deleted.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prism_testkit import ObjectStore, PrismEnv, Slot, prism_suite
from prism_testkit.errors import PayloadTooLarge
from prism_testkit.isolation import Namespace
from prism_testkit.patterns.tiered_storage import GarbageCollector, Migrator, ObjectTier, Reference, TieredStorage
from prism_testkit.simulation.clock import ManualClock

from ._doubles import Killed
from ._helpers import prism_settings
from ._tiered import DAY, START, build_store, copy_count, namespaced_config, remove_everything, tier_of
from ._tiered_faults import StepFault, faulty_store

pytestmark = prism_suite(
    "tiered_storage",
    hot=Slot.needs("keyvalue", "keyvalue.scan"),
    warm=Slot.needs("keyvalue", "keyvalue.scan"),
    cold=Slot.needs("objects"),
    reference=Slot.needs("keyvalue", "keyvalue.cas", "keyvalue.scan"),
)

STREAM_THRESHOLD = 4 << 10  # small, so the streaming path runs on modest values
CHUNK = 1 << 10
MIGRATION_STEPS = 3  # copy to the new tier, switch the reference, remove the old copy
RULES = [
    {"condition": "access_count > 2 AND tier != hot", "action": "promote_to_hot"},
    {"condition": "age > 1_day AND tier == hot", "action": "demote_to_warm"},
    {"condition": "age > 30_days AND tier == warm", "action": "demote_to_cold"},
]


def store_for(prism_env: PrismEnv, ns: Namespace, clock: ManualClock, **settings: Any) -> TieredStorage:
    config = namespaced_config(
        ns,
        **{
            "tiers": {"hot": {}, "warm": {}, "cold": {}},
            "rules": RULES,
            "stream_threshold": STREAM_THRESHOLD,
            "chunk_size": CHUNK,
        }
        | settings,
    )
    drivers = {slot: prism_env.driver(slot) for slot in ("hot", "warm", "cold")}
    return build_store(drivers, prism_env.driver("reference"), config, clock)


@contextlib.asynccontextmanager
async def opened(
    prism_env: PrismEnv, ns: Namespace, clock: ManualClock, **settings: Any
) -> AsyncIterator[TieredStorage]:
    """A prepared store whose keys are all deleted at the end; nothing may be left behind."""
    store = store_for(prism_env, ns, clock, **settings)
    await store.prepare()
    keys: list[str] = []
    store.put = _remembering(store.put, keys)  # type: ignore[method-assign]
    yield store
    await remove_everything(store, keys)
    assert await prism_env.leftovers(ns) == {}, "tiered storage left data behind after deleting every key"


def _remembering(put: Any, keys: list[str]) -> Any:
    async def put_and_remember(key: str, value: bytes) -> None:
        keys.append(key)
        await put(key, value)

    return put_and_remember


async def move(store: TieredStorage, key: str, tier: str) -> None:
    assert await Migrator(store).migrate(key, tier), f"{key} did not move to {tier}"


# --- transparent access ------------------------------------------------------------------


@prism_settings
@given(values=st.lists(st.binary(max_size=256), min_size=3, max_size=3))
async def test_reads_are_transparent_whichever_tier_holds_the_value(prism_env: PrismEnv, values: list[bytes]) -> None:
    async with prism_env.example() as ns:
        clock = ManualClock(START)
        async with opened(prism_env, ns, clock) as store:
            for tier, value in zip(("hot", "warm", "cold"), values, strict=True):
                await store.put(f"k-{tier}", value)
                if tier != "hot":
                    await move(store, f"k-{tier}", tier)
            for tier, value in zip(("hot", "warm", "cold"), values, strict=True):
                assert await tier_of(store, f"k-{tier}") == tier
                assert await store.exists(f"k-{tier}")
                assert await store.get(f"k-{tier}") == value, f"read from {tier}"
            assert await store.get("never-written") is None
            assert not await store.exists("never-written")


async def test_overwrite_and_delete_in_any_tier(prism_env: PrismEnv) -> None:
    clock = ManualClock(START)
    async with opened(prism_env, prism_env.ns, clock) as store:
        for tier in ("hot", "warm", "cold"):
            await store.put(tier, b"first")
            if tier != "hot":
                await move(store, tier, tier)
            await store.put(tier, b"second")  # a put lands in the write tier, the old copy goes
            assert (await store.get(tier), await tier_of(store, tier)) == (b"second", "hot")
        assert await GarbageCollector(store).orphans(grace=0) == []
        assert await store.delete("warm")
        assert await store.get("warm") is None
        assert not await store.delete("warm")
        assert sum((await copy_count(store)).values()) == 2


# --- rules, ttl, capacity ----------------------------------------------------------------


async def test_rules_demote_with_age_and_promote_with_reads_on_the_test_clock(prism_env: PrismEnv) -> None:
    clock = ManualClock(START)
    async with opened(prism_env, prism_env.ns, clock) as store:
        migrator = Migrator(store)
        await store.put("k", b"value")
        assert await migrator.run_once() == 0
        clock.advance(DAY + 1)
        assert await migrator.run_once() == 1
        assert await tier_of(store, "k") == "warm"
        clock.advance(30 * DAY)
        assert await migrator.run_once() == 1
        assert await tier_of(store, "k") == "cold"
        for _ in range(3):
            assert await store.get("k") == b"value"
        assert await migrator.run_once() == 1
        assert await tier_of(store, "k") == "hot"
        assert (store.metrics.demotion_count, store.metrics.promotion_count) == (2, 1)
        assert await GarbageCollector(store).orphans(grace=0) == []


async def test_tier_ttl_moves_values_down_and_the_last_tier_ttl_expires_them(prism_env: PrismEnv) -> None:
    clock = ManualClock(START)
    tiers = {"hot": {"ttl": 60}, "warm": {"ttl": 600}, "cold": {"ttl": 3600}}
    async with opened(prism_env, prism_env.ns, clock, tiers=tiers, rules=[]) as store:
        migrator = Migrator(store)
        await store.put("k", b"short-lived")
        clock.advance(61)
        await migrator.run_once()
        assert await tier_of(store, "k") == "warm"
        clock.advance(590)  # 651s since the write, but only 590s in warm
        await migrator.run_once()
        assert await tier_of(store, "k") == "warm", (
            "warm's ttl (600s) ran from the write, not from when the value entered warm 590s ago"
        )
        clock.advance(11)
        await migrator.run_once()
        assert await tier_of(store, "k") == "cold"
        assert await store.get("k") == b"short-lived"
        clock.advance(3601)
        assert await store.get("k") is None, "a value past the last tier's ttl is gone for readers"
        assert not await store.exists("k")
        assert await migrator.run_once() == 1
        assert store.metrics.expiration_count == 1
        assert sum((await copy_count(store)).values()) == 0
        assert await store.delete("k") is False, "deleting an expired value reported that it existed"
        await store.put("k", b"again")
        assert await store.get("k") == b"again"


async def test_capacity_evicts_the_least_recently_read_values(prism_env: PrismEnv) -> None:
    clock = ManualClock(START)
    async with opened(
        prism_env, prism_env.ns, clock, tiers={"hot": {"capacity": 300}, "warm": {}, "cold": {}}
    ) as store:
        for key in ("a", "b", "c", "d"):
            await store.put(key, key.encode() * 100)
            clock.advance(1)
        await store.get("a")  # read most recently: stays
        clock.advance(1)
        assert await Migrator(store).run_once() == 1
        assert [await tier_of(store, k) for k in "abcd"] == ["hot", "warm", "hot", "hot"]
        assert store.metrics.tier_size == {"hot": 400, "warm": 0, "cold": 0}  # measured before the pass
        assert all([await store.get(k) == k.encode() * 100 for k in "abcd"])


async def test_capacity_counts_the_values_a_pass_promotes_into_the_tier(prism_env: PrismEnv) -> None:
    clock = ManualClock(START)
    async with opened(
        prism_env, prism_env.ns, clock, tiers={"hot": {"capacity": 300}, "warm": {}, "cold": {}}
    ) as store:
        await store.put("d", b"d" * 100)
        await move(store, "d", "warm")
        for key in ("a", "b", "c"):  # hot is full: 300 bytes
            clock.advance(1)
            await store.put(key, key.encode() * 100)
        for _ in range(3):  # access_count > 2: the rules promote d back to hot
            clock.advance(1)
            assert await store.get("d") == b"d" * 100
        await Migrator(store).run_once()
        tiers = {k: await tier_of(store, k) for k in "abcd"}
        hot = sum(100 for tier in tiers.values() if tier == "hot")
        assert hot <= 300, f"a pass promoted into hot past its capacity (300 bytes): {hot} bytes, tiers {tiers}"
        assert tiers == {"a": "warm", "b": "hot", "c": "hot", "d": "hot"}, "not the least recently read evicted"


async def test_more_keys_due_than_one_batch_all_move_past_a_key_that_keeps_failing(prism_env: PrismEnv) -> None:
    """Five keys due to move, two moves per pass (``migration_batch``), and warm refusing every
    copy of the first key: each pass moves what it can, the failed key holds back no other, and
    passes go on until every other key has moved; once warm takes the copy, the last key moves
    too. Bugs caught: a pass that ends at the first failed move (every key after it waits), a
    migrator that plans over one batch of references only (the keys after the first batch are
    never seen)."""
    clock = ManualClock(START)
    keys = [f"k{i}" for i in range(5)]
    async with opened(prism_env, prism_env.ns, clock, migration_batch=2) as store:
        for key in keys:
            await store.put(key, key.encode())
        clock.advance(DAY + 1)  # every key is due to move to warm
        warm = store.tiers["warm"]
        write = warm.write
        refused = keys[0]

        async def refusing_write(name: str, value: bytes) -> None:
            if name.startswith(store.copy_name("warm", refused, "")):  # any copy of the refused key
                raise OSError(f"injected: warm refuses the copy of {refused}")
            await write(name, value)

        warm.write = refusing_write  # type: ignore[method-assign]
        migrator = Migrator(store)
        moved = [await migrator.run_once()]
        assert moved == [1], (
            f"the pass ended at the failed move of {refused}: {keys[1]}, planned after it, did not move"
        )
        while moved[-1] and len(moved) <= len(keys):
            moved.append(await migrator.run_once())
        tiers = {key: await tier_of(store, key) for key in keys}
        assert tiers == {refused: "hot"} | {key: "warm" for key in keys[1:]}, (
            f"keys left behind after {len(moved)} passes of 2 moves (moved per pass {moved}): {tiers}"
        )
        assert store.metrics.migration_failures == len(moved), "each pass tried the failing key once and counted it"
        del warm.write
        assert await migrator.run_once() == 1
        assert {key: await store.get(key) for key in keys} == {key: key.encode() for key in keys}
        assert await tier_of(store, refused) == "warm"


async def test_a_value_over_max_value_size_is_refused_and_nothing_is_written(prism_env: PrismEnv) -> None:
    clock = ManualClock(START)
    async with opened(prism_env, prism_env.ns, clock, max_value_size=100) as store:
        with pytest.raises(PayloadTooLarge):
            await store.put("big", b"x" * 101)
        assert await store.get("big") is None, "a refused value is readable"
        assert sum((await copy_count(store)).values()) == 0, "a refused put left a copy behind"
        await store.put("fits", b"x" * 100)
        assert await store.get("fits") == b"x" * 100


async def test_the_collector_spares_the_copy_of_a_put_still_in_flight(prism_env: PrismEnv) -> None:
    clock = ManualClock(START)
    async with opened(prism_env, prism_env.ns, clock) as store:
        collected: list[int] = []
        switch = store.switch

        async def collect_then_switch(key: str, expected: bytes | None, new: Reference) -> bool:
            collected.append(await GarbageCollector(store).collect())  # between the copy and its reference
            return await switch(key, expected, new)

        store.switch = collect_then_switch  # type: ignore[method-assign]
        try:
            await store.put("k", b"value")
        finally:
            del store.switch
        assert collected == [0], f"the collector removed {collected} copies while a put was in flight (gc_grace)"
        assert await store.get("k") == b"value"


async def test_large_values_stream_into_and_out_of_the_cold_tier(prism_env: PrismEnv) -> None:
    clock = ManualClock(START)
    async with opened(prism_env, prism_env.ns, clock) as store:
        cold = store.tiers["cold"]
        assert isinstance(cold, ObjectTier)
        counting = StreamCounter(cold.objects)
        cold.objects = counting
        value = bytes(range(256)) * (5 * STREAM_THRESHOLD // 256)
        await store.put("big", value)
        await move(store, "big", "cold")
        assert counting.streamed_in == 1
        assert await store.get("big") == value
        assert counting.chunks_out >= len(value) // CHUNK
        info = await counting.info(cold.bucket, store.copy_name("cold", "big", (await store.load("big"))[1].copy))  # type: ignore[union-attr]
        assert info.size == len(value)


class StreamCounter:
    """An object store that counts streamed writes and streamed chunks read."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.streamed_in = 0
        self.chunks_out = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def put_stream(self, *args: Any, **kwargs: Any) -> Any:
        self.streamed_in += 1
        return await self.inner.put_stream(*args, **kwargs)

    async def get_stream(self, *args: Any, **kwargs: Any) -> AsyncIterator[bytes]:
        async for chunk in self.inner.get_stream(*args, **kwargs):
            self.chunks_out += 1
            yield chunk


# --- crash safety ------------------------------------------------------------------------


async def test_a_migrator_killed_at_every_step_loses_nothing_and_leaves_no_orphan(prism_env: PrismEnv) -> None:
    for step in range(MIGRATION_STEPS):
        ns = prism_env.ns.child()
        clock = ManualClock(START)
        async with opened(prism_env, ns, clock) as store:
            await store.put("k", f"value-{step}".encode())
            clock.advance(DAY + 1)
            fault = StepFault(step)
            with contextlib.suppress(Killed):
                await Migrator(faulty_store(store, fault)).run_once()
            assert fault.dead, f"the fault at step {step} never fired"
            assert await store.get("k") == f"value-{step}".encode(), f"killed after {step} steps"
            orphans = await GarbageCollector(store).orphans(grace=0)
            assert len(orphans) == (0 if step == 0 else 1), f"killed after {step} steps: {orphans}"
            clock.advance(store.config.gc_grace + 1)
            assert await GarbageCollector(store).collect() == len(orphans)
            assert sum((await copy_count(store)).values()) == 1, "exactly one copy per key after GC"
            switched = step >= 2  # the reference already names the new copy
            assert await Migrator(store).run_once() == (0 if switched else 1), "a restarted migrator finishes the move"
            assert (await tier_of(store, "k"), await store.get("k")) == ("warm", f"value-{step}".encode())


async def test_a_put_racing_a_migration_is_kept_at_every_step(prism_env: PrismEnv) -> None:
    for step in range(MIGRATION_STEPS):
        ns = prism_env.ns.child()
        clock = ManualClock(START)
        async with opened(prism_env, ns, clock) as store:
            await store.put("k", b"older")
            clock.advance(DAY + 1)

            async def racing_put(store: TieredStorage = store) -> None:
                await store.put("k", b"newer")

            await Migrator(faulty_store(store, StepFault(step, racing_put))).run_once()
            assert await store.get("k") == b"newer", f"a put between migration steps {step} and {step + 1} was lost"
            clock.advance(store.config.gc_grace + 1)
            await GarbageCollector(store).collect()
            assert sum((await copy_count(store)).values()) == 1
