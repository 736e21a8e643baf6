"""Building tiered storage over a combination's drivers, shared by the tiered storage suites."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from prism_testkit.patterns.tiered_storage import (
    GarbageCollector,
    KeyValueTier,
    ObjectTier,
    Tier,
    TieredStorage,
    TieredStorageConfig,
)

from prism_testkit import Driver
from prism_testkit.isolation import Namespace

DAY = 86400.0
START = 1_000_000.0  # the first reading of a tiered store's ManualClock (s)


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
