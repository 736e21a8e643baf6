"""Unit tests of patterns.tiered_storage on the in-process memstore: the rule grammar, the
config model, transparent reads, rules / ttl / capacity driven by a test clock, and a
migration (and a put) killed at every step."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pydantic import ValidationError

from prism_testkit.backends.memstore import open_memstore
from prism_testkit.cli import main
from prism_testkit.errors import ConfigurationError, PayloadTooLarge
from prism_testkit.patterns.tiered_storage import (
    CopyMissing,
    CorruptReference,
    GarbageCollector,
    KeyValueTier,
    Migrator,
    ObjectTier,
    RuleSyntaxError,
    TieredStorage,
    TieredStorageConfig,
    parse_condition,
)
from prism_testkit.simulation.clock import ManualClock
from prism_testkit.suites._doubles import Killed
from prism_testkit.suites._tiered_faults import StepFault, faulty_store

T = TypeVar("T")
DAY = 86400.0
T0 = 1_000_000.0  # the store's clock at the start of each test


def run(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(factory())


async def make(clock: ManualClock | None = None, warm: bool = True, **overrides: Any) -> TieredStorage:
    hot, warm_driver, cold, ref = open_memstore(), open_memstore(), open_memstore(), open_memstore()
    tiers: dict[str, Any] = {"hot": KeyValueTier(hot.keyvalue())}
    settings: dict[str, Any] = {
        "tiers": {"hot": {"ttl": DAY}, "warm": {"ttl": 30 * DAY}, "cold": {}},
        "rules": [
            {"condition": "access_count > 3 AND tier != hot", "action": "promote_to_hot"},
            {"condition": "age > 1_day AND tier == hot", "action": "demote_to_warm"},
            {"condition": "age > 30_days AND tier == warm", "action": "demote_to_cold"},
        ],
        "stream_threshold": 1024,
        "chunk_size": 256,
    }
    if warm:
        tiers["warm"] = KeyValueTier(warm_driver.keyvalue())
    else:
        settings["tiers"] = {"hot": {"ttl": DAY}, "cold": {}}
        settings["rules"] = []
    settings.update(overrides)
    config = TieredStorageConfig.model_validate(settings)
    tiers["cold"] = ObjectTier(
        cold.objects(), config.bucket, stream_threshold=config.stream_threshold, chunk_size=config.chunk_size
    )
    store = TieredStorage(tiers, ref.keyvalue(), config, clock=clock or ManualClock(T0))
    await store.prepare()
    return store


async def copies(store: TieredStorage) -> dict[str, list[str]]:
    return {name: [n async for n in tier.names(store.tier_prefix(name))] for name, tier in store.tiers.items()}


# --- the grammar -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "facts", "expected"),
    [
        ("access_count > 10", {"access_count": 11}, True),
        ("access_count > 10", {"access_count": 10}, False),
        ("age > 1_day AND tier == hot", {"age": DAY + 1, "tier": "hot"}, True),
        ("age > 1_day AND tier == hot", {"age": DAY + 1, "tier": "warm"}, False),
        ("age > 30_days OR size >= 10KB", {"age": 0, "size": 10_000}, True),
        ("NOT (idle < 12h) and tier != cold", {"idle": 43_201, "tier": "warm"}, True),
        ("age_in_tier <= 100ms", {"age_in_tier": 0.1}, True),
        ("size > 1_000", {"size": 1001}, True),
    ],
)
def test_conditions_evaluate(text: str, facts: dict[str, Any], expected: bool) -> None:
    assert parse_condition(text).evaluate(facts) is expected


@pytest.mark.parametrize(
    ("text", "column", "expected"),
    [
        ("", 1, "a condition"),
        ("age >", 6, "a duration"),
        ("tier > hot", 6, "== or !="),
        ("tier == lukewarm", 9, "a tier (hot, warm, cold)"),
        ("access_count > 1d", 16, "a whole number"),
        ("__import__ == 1", 1, "a field"),
        ("__import__('os') == 1", 12, "a field, an operator"),
        ("age > 1d AND", 13, "a field"),
        ("(age > 1", 9, "')'"),
        ("age > 1d size > 1", 10, "AND, OR or the end"),
        ("age > 1d;", 9, "a field, an operator"),
    ],
)
def test_malformed_conditions_raise_typed_errors_with_position(text: str, column: int, expected: str) -> None:
    with pytest.raises(RuleSyntaxError) as info:
        parse_condition(text)
    assert info.value.position + 1 == column
    assert expected in str(info.value)
    assert isinstance(info.value, ConfigurationError)


@pytest.mark.parametrize("text", ["(" * 5000 + "age > 1d" + ")" * 5000, "NOT " * 5000 + "age > 1d"])
def test_deeply_nested_conditions_are_refused_not_a_recursion_error(text: str) -> None:
    with pytest.raises(RuleSyntaxError, match="expected at most 32 nested parentheses and NOTs") as info:
        parse_condition(text)
    assert len(str(info.value)) < 200  # the rule is shown around the error, not whole


def test_nesting_up_to_the_limit_parses() -> None:
    assert parse_condition("(" * 16 + "NOT " * 16 + "age > 1d" + ")" * 16).fields() == {"age"}


def test_config_rejects_bad_rules_and_unknown_tiers_at_load_time() -> None:
    with pytest.raises(ValidationError, match=r"rules\.0\.condition") as info:
        TieredStorageConfig.model_validate({"rules": [{"condition": "age >> 1", "action": "demote_to_cold"}]})
    assert "column 6" in str(info.value)
    with pytest.raises(ValidationError, match="nothing is promoted to it"):
        TieredStorageConfig.model_validate({"rules": [{"condition": "age > 1", "action": "promote_to_cold"}]})
    with pytest.raises(ValidationError, match="names tier 'warm', which is not configured"):
        TieredStorageConfig.model_validate({"rules": [{"condition": "age > 1", "action": "demote_to_warm"}]})
    with pytest.raises(ValidationError, match="unknown tier"):
        TieredStorageConfig.model_validate({"tiers": {"hot": {}, "lukewarm": {}}})
    assert (
        TieredStorageConfig.model_validate({"tiers": {"hot": {"ttl": "1d", "capacity": "10GB"}, "cold": {}}})
        .tiers["hot"]
        .ttl
        == DAY
    )


def test_store_refuses_tiers_that_do_not_match_its_config() -> None:
    with pytest.raises(ConfigurationError, match="give one backend per configured tier"):
        TieredStorage({"hot": KeyValueTier(open_memstore().keyvalue())}, open_memstore().keyvalue())


# --- the client API ----------------------------------------------------------------------


def test_put_get_delete_exists_are_transparent_across_tiers() -> None:
    async def go() -> None:
        clock = ManualClock(T0)
        store = await make(clock)
        big = bytes(range(256)) * 20  # above stream_threshold: streams into the cold tier
        await store.put("small", b"one")
        await store.put("big", big)
        for _ in range(2):
            clock.now += 31 * DAY
            await Migrator(store).run_once()
        assert [(await store.load(k))[1].tier for k in ("small", "big")] == ["cold", "cold"]  # type: ignore[union-attr]
        assert await store.get("small") == b"one"
        assert await store.get("big") == big
        assert await store.exists("big")
        assert await store.delete("big")
        assert not await store.exists("big")
        assert await store.get("big") is None
        assert not await store.delete("big")
        assert await store.get("missing") is None
        assert await GarbageCollector(store).orphans(grace=0) == []

    run(go)


def test_overwrite_removes_the_old_copy_and_over_limit_values_are_refused() -> None:
    async def go() -> None:
        store = await make(max_value_size=10)
        await store.put("k", b"v1")
        await store.put("k", b"v2")
        assert await store.get("k") == b"v2"
        assert len((await copies(store))["hot"]) == 1
        with pytest.raises(PayloadTooLarge):
            await store.put("k", b"x" * 11)
        assert await store.get("k") == b"v2"

    run(go)


def test_rules_promote_and_demote_on_the_test_clock() -> None:
    async def go() -> None:
        clock = ManualClock(T0)
        store = await make(clock)
        migrator = Migrator(store)
        await store.put("k", b"v")
        assert await migrator.run_once() == 0
        clock.now += DAY + 1
        assert await migrator.run_once() == 1
        assert (await store.load("k"))[1].tier == "warm"  # type: ignore[union-attr]
        for _ in range(4):
            assert await store.get("k") == b"v"
        assert await migrator.run_once() == 1
        _, reference = await store.load("k")
        assert reference is not None
        assert (reference.tier, reference.access_count) == ("hot", 4)
        assert store.metrics.promotion_count == 1
        assert store.metrics.demotion_count == 1
        assert 'prism_tiered_storage_promotion_count_total{namespace="ns"} 1' in store.metrics.prometheus("ns")

    run(go)


def test_last_tier_ttl_expires_values_and_capacity_evicts_the_least_recently_read() -> None:
    async def go() -> None:
        clock = ManualClock(T0)
        store = await make(clock, warm=False, tiers={"hot": {"capacity": 10}, "cold": {"ttl": 5}})
        migrator = Migrator(store)
        for key in ("a", "b", "c"):
            await store.put(key, b"12345")
            clock.now += 1
        await store.get("a")
        assert await migrator.run_once() == 1
        assert store.metrics.tier_size == {"hot": 15, "cold": 0}
        assert (await store.load("b"))[1].tier == "cold"  # type: ignore[union-attr]
        clock.now += 6
        assert await store.get("b") is None
        assert not await store.exists("b")
        assert await migrator.run_once() == 1
        assert store.metrics.expiration_count == 1
        assert (await copies(store))["cold"] == []
        await store.put("b", b"back")  # a put replaces the tombstone
        assert await store.get("b") == b"back"

    run(go)


def test_a_corrupt_reference_is_a_typed_error() -> None:
    async def go() -> None:
        store = await make()
        await store.reference.put(store.reference_key("k"), b"{not json")
        with pytest.raises(CorruptReference):
            await store.get("k")
        await store.put("ok", b"v")
        assert await store.get("ok") == b"v"

    run(go)


def test_a_copy_lost_behind_its_reference_is_reported_not_hidden() -> None:
    async def go() -> None:
        store = await make()
        await store.put("k", b"v")
        for name in (await copies(store))["hot"]:
            await store.tier("hot").remove(name)
        with pytest.raises(CopyMissing):
            await store.get("k")

    run(go)


# --- crash safety ------------------------------------------------------------------------

MIGRATION_STEPS = 3  # copy, switch, remove the old copy


@pytest.mark.parametrize("step", range(MIGRATION_STEPS + 1))
def test_a_migrator_killed_at_any_step_loses_nothing_and_gc_removes_its_orphan(step: int) -> None:
    async def go() -> None:
        clock = ManualClock(T0)
        store = await make(clock)
        await store.put("k", b"v")
        clock.now += DAY + 1
        fault = StepFault(step)
        with contextlib.suppress(Killed):
            await Migrator(faulty_store(store, fault)).run_once()
        assert fault.dead is (step < MIGRATION_STEPS)
        assert await store.get("k") == b"v"
        clock.now += store.config.gc_grace + 1
        await GarbageCollector(store).collect()
        assert await GarbageCollector(store).orphans(grace=0) == []
        assert sum(len(names) for names in (await copies(store)).values()) == 1
        await Migrator(store).run_once()  # a restarted migrator finishes the move
        assert (await store.load("k"))[1].tier == "warm"  # type: ignore[union-attr]
        assert await store.get("k") == b"v"

    run(go)


@pytest.mark.parametrize("step", range(MIGRATION_STEPS))
def test_a_put_racing_a_migration_is_never_overwritten_by_the_older_copy(step: int) -> None:
    async def go() -> None:
        clock = ManualClock(T0)
        store = await make(clock)
        await store.put("k", b"old")
        clock.now += DAY + 1

        async def racing_put() -> None:
            await store.put("k", b"new")

        await Migrator(faulty_store(store, StepFault(step, racing_put))).run_once()
        assert await store.get("k") == b"new"
        clock.now += store.config.gc_grace + 1
        await GarbageCollector(store).collect()
        assert sum(len(names) for names in (await copies(store)).values()) == 1

    run(go)


@pytest.mark.parametrize("step", range(3))  # copy, switch, remove the old copy
def test_a_put_killed_at_any_step_leaves_old_or_new_value(step: int) -> None:
    async def go() -> None:
        clock = ManualClock(T0)
        store = await make(clock)
        await store.put("k", b"old")
        fault = StepFault(step)
        with pytest.raises(Killed):
            await faulty_store(store, fault).put("k", b"new")
        assert await store.get("k") == (b"old" if step < 2 else b"new")
        assert await GarbageCollector(store).orphans() == []  # young copies may be writes in flight
        clock.now += store.config.gc_grace + 1
        assert await GarbageCollector(store).collect() == (0 if step == 0 else 1)
        assert sum(len(names) for names in (await copies(store)).values()) == 1

    run(go)


def test_two_tiers_on_one_backend_never_collect_each_others_copies() -> None:
    async def go() -> None:
        clock = ManualClock(T0)
        shared = open_memstore().keyvalue()
        config = TieredStorageConfig.model_validate({"tiers": {"hot": {"ttl": 10}, "warm": {}}, "rules": []})
        store = TieredStorage({"hot": KeyValueTier(shared), "warm": KeyValueTier(shared)}, shared, config, clock=clock)
        await store.put("k", b"v")
        clock.now += 11
        assert await Migrator(store).run_once() == 1
        clock.now += config.gc_grace + 1
        assert await GarbageCollector(store).collect() == 0
        assert await store.get("k") == b"v"

    run(go)


# --- namespace files ---------------------------------------------------------------------

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "namespaces" / "user-activity.yaml"


def test_validate_rejects_a_tiered_namespace_without_a_reference_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", str(EXAMPLE)]) == 0
    broken = tmp_path / "no-reference.yaml"
    broken.write_text(EXAMPLE.read_text().replace("reference: sqlite", "# no reference store"))
    assert main(["validate", str(broken)]) != 0
    out = capsys.readouterr()
    assert (
        "namespaces[0].patterns[0].slots.reference: missing slot 'reference' of tiered-storage: expected a backend "
        "with keyvalue and keyvalue.cas and keyvalue.scan; durable" in out.out + out.err
    )


def test_reads_write_access_statistics_only_when_rules_or_capacity_use_them() -> None:
    plain = TieredStorageConfig.model_validate({"rules": [{"condition": "age > 1d", "action": "demote_to_cold"}]})
    assert not plain.counts_accesses
    assert TieredStorageConfig().counts_accesses  # RFC-009's access_count > 10
    by_capacity = {"tiers": {"hot": {"capacity": 10}, "cold": {}}, "rules": []}
    assert TieredStorageConfig.model_validate(by_capacity).counts_accesses
    with pytest.raises(ValidationError, match="must not be prefixes of each other"):
        TieredStorageConfig(reference_prefix="t/", data_prefix="t/data/")


def test_a_write_slower_than_half_the_gc_grace_never_switches_to_its_copy() -> None:
    async def go() -> None:
        clock = ManualClock(T0)
        store = await make(clock)
        await store.put("k", b"old")
        clock.now += DAY + 1

        async def stall() -> None:  # the migrator stalls while writing its copy, past half the grace
            clock.now += store.config.gc_grace / 2 + 1

        assert await Migrator(faulty_store(store, StepFault(0, stall))).run_once() == 0
        assert await tier_of_key(store, "k") == "hot"
        assert await store.get("k") == b"old"
        assert await GarbageCollector(store).orphans(grace=0) == []  # its copy was removed

    run(go)


def test_the_background_migrator_moves_keys_until_cancelled() -> None:
    async def go() -> None:
        clock = ManualClock(T0)
        store = await make(clock)
        await store.put("k", b"v")
        clock.now += DAY + 1
        job = asyncio.create_task(Migrator(store).run_forever(0.01))
        for _ in range(200):
            if await tier_of_key(store, "k") == "warm":
                break
            await asyncio.sleep(0.01)
        job.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await job
        assert await tier_of_key(store, "k") == "warm"

    run(go)


async def tier_of_key(store: TieredStorage, key: str) -> str | None:
    _, reference = await store.load(key)
    return None if reference is None else reference.tier
