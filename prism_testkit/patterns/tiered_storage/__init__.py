"""Tiered storage (RFC-009 §1): hot / warm / cold tiers behind one key-value API, a named
reference store (compare-and-set on a per-key record) and crash-safe migration.

- :mod:`.rules`: the promotion / demotion condition grammar (never ``eval``);
- :mod:`.config`: the one config model of namespace files and code;
- :mod:`.references`, :mod:`.tiers`: reference records and tier adapters;
- :mod:`.store`: the client API (get / put / delete / exists) and metrics;
- :mod:`.migrator`: the migrator (copy -> switch -> remove) and the garbage collector.

This module registers the pattern.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prism_testkit.registry.combinations import Slot
from prism_testkit.registry.hookspecs import hookimpl
from prism_testkit.registry.patterns import (
    CheckContext,
    Complexity,
    ConfigProblem,
    NeedsContext,
    PatternSlot,
    PatternSpec,
    Priority,
    Wanted,
)

from .config import DAY, TieredStorageConfig, TierRule, TierSettings
from .errors import CopyMissing, CorruptReference, TieredStorageError, VersionConflict
from .migrator import GarbageCollector, Migrator, Move
from .references import Reference
from .rules import TIERS, RuleSyntaxError, parse_condition
from .store import TieredStorage, TieredStorageMetrics
from .tiers import KeyValueTier, ObjectTier, Tier

__all__ = [
    "TIERS",
    "CopyMissing",
    "CorruptReference",
    "GarbageCollector",
    "KeyValueTier",
    "Migrator",
    "Move",
    "ObjectTier",
    "Reference",
    "RuleSyntaxError",
    "Tier",
    "TierRule",
    "TierSettings",
    "TieredStorage",
    "TieredStorageConfig",
    "TieredStorageError",
    "TieredStorageMetrics",
    "VersionConflict",
    "parse_condition",
]

HOT_WINDOW = DAY  # data kept longer than a day leaves the hot tier (RFC-009's hot ttl)


def _wanted(ctx: NeedsContext, problem: Callable[[str, str], None]) -> list[Wanted]:
    retention = ctx.needs.retention
    if retention is not None and retention > HOT_WINDOW:
        return [("needs.retention", "retention longer than the hot tier (1 day)")]
    return []


def _defaults(ctx: NeedsContext) -> dict[str, object]:
    """RFC-009's example: hot for a day, warm (when a warm backend is named) for 30 days."""
    if "warm" not in ctx.roles:
        return {}
    return {
        "tiers": {"hot": {"ttl": DAY}, "warm": {"ttl": 30 * DAY}, "cold": {}},
        "rules": [
            {"condition": "access_count > 10 AND tier != hot", "action": "promote_to_hot"},
            {"condition": "age > 1_day AND tier == hot", "action": "demote_to_warm"},
            {"condition": "age > 30_days AND tier == warm", "action": "demote_to_cold"},
        ],
    }


def _check(ctx: CheckContext) -> Iterator[ConfigProblem]:
    config = ctx.config
    assert isinstance(config, TieredStorageConfig)
    for tier in TIERS:
        if tier in config.tiers and tier not in ctx.slots:
            yield f"tiers.{tier}", f"tier {tier!r} is configured but slot {tier!r} names no backend"
        if tier in ctx.slots and tier not in config.tiers:
            yield "tiers", f"slot {tier!r} names backend {ctx.slots[tier].name!r} but tiers has no {tier!r} entry"


SPEC = PatternSpec(
    name="tiered-storage",
    title="Tiered Storage",
    priority=Priority.P1,
    complexity=Complexity.MEDIUM,
    slots={
        "hot": PatternSlot(Slot.needs("keyvalue", "keyvalue.scan"), ("hot",), "fast tier for recent data"),
        "warm": PatternSlot(Slot.needs("keyvalue", "keyvalue.scan"), ("warm",), "optional middle tier", required=False),
        "cold": PatternSlot(
            Slot.needs("objects", durable=True), ("cold",), "archive tier", hint="the archive is the last copy"
        ),
        "reference": PatternSlot(
            Slot.needs("keyvalue", "keyvalue.cas", "keyvalue.scan", durable=True),
            ("reference",),
            "reference store recording which tier holds each key (compare-and-set on every change)",
            hint="without it no read can find data that left the hot tier",
        ),
    },
    config=TieredStorageConfig,
    client_apis=frozenset({"queue", "pubsub", "keyvalue", "reader"}),  # under a WAL too (RFC-009 composite)
    summary="data moves between hot, warm and cold tiers by rules; a named reference store says where each key lives",
    suites=("tiered_storage", "stateful_tiered_storage", "lifecycle"),
    wanted=_wanted,
    defaults=_defaults,
    check=_check,
)


@hookimpl
def prism_register_patterns() -> list[PatternSpec]:
    return [SPEC]
