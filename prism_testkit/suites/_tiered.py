"""Building tiered storage over a combination's drivers, shared by the tiered storage suites."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from prism_testkit import Driver
from prism_testkit.isolation import Namespace
from prism_testkit.patterns.tiered_storage import (
    GarbageCollector,
    KeyValueTier,
    ObjectTier,
    Tier,
    TieredStorage,
    TieredStorageConfig,
)
from prism_testkit.stateful.checkers import FOLLOWS, SLOTS, LossId

DAY = 86400.0
START = 1_000_000.0  # the first reading of a tiered store's ManualClock (s)
MISSING = "<copy missing>"  # a read whose reference named a copy that was gone


def namespaced_config(ns: Namespace, **settings: Any) -> TieredStorageConfig:
    """``settings`` with reference and copy names and the bucket inside ``ns`` (so purge and
    leftovers see them)."""
    names = {"reference_prefix": ns.prefix + "ref/", "data_prefix": ns.prefix + "data/", "bucket": ns.name("cold")}
    return TieredStorageConfig.model_validate(names | settings)


def build_store(
    drivers: Mapping[str, Driver], reference: Driver, config: TieredStorageConfig, clock: Callable[[], float]
) -> TieredStorage:
    """Key-value tiers for hot / warm, an object tier for cold, as the slots declare."""
    tiers: dict[str, Tier] = {}
    for name in config.tiers:
        driver = drivers[name]
        if name == "cold":
            tiers[name] = ObjectTier(
                driver.objects(), config.bucket, stream_threshold=config.stream_threshold, chunk_size=config.chunk_size
            )
        else:
            tiers[name] = KeyValueTier(driver.keyvalue())
    return TieredStorage(tiers, reference.keyvalue(), config, clock=clock)


async def copy_count(store: TieredStorage) -> dict[str, int]:
    """Copies per tier (current ones and orphans)."""
    return {name: len([n async for n in tier.names(store.tier_prefix(name))]) for name, tier in store.tiers.items()}


async def tier_of(store: TieredStorage, key: str) -> str | None:
    _, reference = await store.load(key)
    return None if reference is None else reference.tier


async def remove_everything(store: TieredStorage, keys: list[str]) -> None:
    """Delete ``keys``, collect every orphan and drop the cold bucket: nothing may remain."""
    for key in keys:
        await store.delete(key)
    await GarbageCollector(store).collect(grace=0)
    cold = store.tiers.get("cold")
    if isinstance(cold, ObjectTier) and await cold.objects.bucket_exists(cold.bucket):
        await cold.objects.delete_bucket(cold.bucket)


# -- judging (pure: the stateful suite's checker, unit-tested in tests/test_tolerated_once.py) --


def read_anomaly(got: str | None, allowed: Collection[str | None], written: Sequence[str]) -> str | None:
    """What a read of a key that returned ``got`` found, when the model ``allowed`` those values
    (:data:`MISSING`: its copy was lost on purpose) and ``written`` were ever written to it:
    None (a right answer), ``silently-absent``, ``lost``, ``resurrected``, ``stale`` or
    ``unexpected``. A read of :data:`MISSING` not allowed is ``lost``: the copy its reference
    names is gone, and nothing removed it on purpose."""
    if got in allowed:
        return None
    if got is None and MISSING in allowed:
        return "silently-absent"  # a lost value passed for a key never written
    if got is None or got == MISSING:
        return "lost"
    if got in written:
        return "resurrected" if set(allowed) == {None} else "stale"
    return "unexpected"


def lost_where(got: str | None, tier: str | None) -> dict[str, tuple[str, ...]]:
    """The facts naming the slots whose backends may have lost what a read judged ``lost``
    found gone (:data:`~prism_testkit.stateful.checkers.SLOTS`): no value at all, the
    reference store (the reference is what is gone); :data:`MISSING`, the reference store or
    ``tier``, the tier whose copy the reference names (a reference rolled back may name a copy
    since removed). A failover of another slot's backend excuses neither; none when the tier
    is not known."""
    if got is None:
        return {SLOTS: ("reference",)}
    if got == MISSING and tier is not None:
        return {SLOTS: ("reference", tier)}
    return {}


def read_again(last_lost: Mapping[str, str | None], key: str, got: str | None) -> dict[str, tuple[LossId, ...]]:
    """The facts of a read of ``key`` judged ``lost`` that returned ``got``: that it follows the
    key's earlier lost read when that returned the same and nothing was written to the key
    since (``last_lost``: each such key's last lost answer), one loss seen twice; else none."""
    return {FOLLOWS: ((key, None),)} if key in last_lost and last_lost[key] == got else {}


def missing_copies(
    live: int, copies: Mapping[str, int], reported: Collection[str], read_lost: Collection[str]
) -> tuple[str, dict[str, tuple[LossId, ...]]] | None:
    """After garbage collection with no grace every live key (a reference, not an expired
    marker) holds exactly one copy, but a key whose final read found its copy gone: rightly,
    ``reported`` (lost on purpose), or not, ``read_lost`` (that read was judged ``lost``).
    None when the copies add up; else the ``missing-copy`` message and its facts: that it
    follows the final reads of ``read_lost`` when their missing copies are the whole shortfall
    (the same event, already judged: one verdict, see
    :data:`~prism_testkit.stateful.checkers.FOLLOWS`), nothing when anything else is amiss (a
    finding of its own)."""
    held, owed = sum(copies.values()), live - len(reported)
    if held == owed:
        return None
    message = (
        f"{live} live keys ({len(reported)} of them lost on purpose, {len(read_lost)} read as lost) "
        f"but copies per tier {dict(copies)} after GC"
    )
    explained = bool(read_lost) and held == owed - len(read_lost)
    return message, {FOLLOWS: tuple((key, None) for key in sorted(read_lost))} if explained else {}
