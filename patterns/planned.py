"""Patterns of RFC-009 that are specified but not built yet (``implemented=False``).

They are registered so namespace files that use them validate today, with config models that
follow RFC-009's examples. When a pattern is built, its registration moves into its own module
with the config model its code takes, and its entry leaves this file.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from prism_testkit.combinations import Slot
from prism_testkit.config.units import Duration
from prism_testkit.hookspecs import hookimpl
from prism_testkit.pattern_registry import (
    DURABLE_LOG_HINT,
    MESSAGING,
    Complexity,
    NeedsContext,
    PatternSlot,
    PatternSpec,
    Priority,
    Wanted,
)

HOT_WINDOW = 86400.0  # data kept longer than a day leaves the hot tier (RFC-009's hot ttl)


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WalSettings(_Settings):
    retention: Duration | None = Field(default=None, gt=0, description="keep the log this long (seconds)")
    fsync: bool = True
    apply_mode: Literal["sync", "async", "hybrid"] = "async"
    batch_size: int = Field(default=1000, ge=1)
    batch_timeout: Duration = Field(default=0.1, gt=0)
    checkpoint_interval: Duration = Field(default=60.0, gt=0)
    compaction: Literal["none", "keep_latest"] = "none"


class TieredStorageSettings(_Settings):
    hot_ttl: Duration = Field(default=86400.0, gt=0, description="demote from hot after this long")
    warm_ttl: Duration | None = Field(default=2592000.0, gt=0, description="demote from warm after this long")
    promote_after_accesses: int = Field(default=10, ge=1)
    reference_prefix: str = Field(default="tier/", description="key prefix of the reference records")


class EventSourcingSettings(_Settings):
    retention: Duration | None = Field(default=None, gt=0, description="None or infinite: keep every event")
    snapshot_interval: int | None = Field(default=100, ge=1)


class CqrsSettings(_Settings):
    lag_tolerance: Duration = Field(default=1.0, gt=0, description="alert when a read model lags more")


def _retention_default(ctx: NeedsContext) -> dict[str, object]:
    retention = ctx.needs.retention
    if retention is None:
        return {}
    return {"retention": retention if math.isfinite(retention) else None}


def _wal_wanted(ctx: NeedsContext, problem: Callable[[str, str], None]) -> list[Wanted]:
    if ctx.client_api not in WAL.client_apis:
        return []
    if ctx.needs.durability == "strong":
        return [("needs.durability", "durability: strong")]
    if ctx.needs.replay:
        return [("needs.replay", "replay: enabled")]
    return []


def _tiered_wanted(ctx: NeedsContext, problem: Callable[[str, str], None]) -> list[Wanted]:
    retention = ctx.needs.retention
    if retention is not None and retention > HOT_WINDOW:
        return [("needs.retention", "retention longer than the hot tier (1 day)")]
    return []


def _audit_wanted(ctx: NeedsContext, problem: Callable[[str, str], None]) -> list[Wanted]:
    return [("needs.audit", "audit: true")] if ctx.needs.audit else []


WAL = PatternSpec(
    name="wal",
    title="Write-Ahead Log",
    priority=Priority.P1,
    complexity=Complexity.MEDIUM,
    slots={
        "log": PatternSlot(
            Slot.needs("log", durable=True),
            ("log", "messaging"),
            "durable log written before the ack",
            hint=DURABLE_LOG_HINT,
        ),
    },
    config=WalSettings,
    client_apis=frozenset({"queue", "pubsub", "keyvalue", "transact"}),
    summary="operations are appended to a durable log before they are acknowledged; replay and compaction",
    conflicts=frozenset({"event-sourcing"}),
    before=frozenset({"tiered-storage"}),
    implemented=False,
    wanted=_wal_wanted,
    defaults=_retention_default,
)

TIERED_STORAGE = PatternSpec(
    name="tiered-storage",
    title="Tiered Storage",
    priority=Priority.P1,
    complexity=Complexity.MEDIUM,
    slots={
        "hot": PatternSlot(Slot.needs("keyvalue"), ("hot",), "fast tier for recent data"),
        "warm": PatternSlot(Slot.needs("keyvalue"), ("warm",), "optional middle tier", required=False),
        "cold": PatternSlot(
            Slot.needs("objects", durable=True), ("cold",), "archive tier", hint="the archive is the last copy"
        ),
        "reference": PatternSlot(
            Slot.needs("keyvalue", durable=True),
            ("reference",),
            "reference store recording which tier holds each key",
            hint="without it no read can find data that left the hot tier",
        ),
    },
    config=TieredStorageSettings,
    client_apis=frozenset({"queue", "pubsub", "keyvalue", "reader"}),
    summary="data moves hot -> warm -> cold with age; a reference store says where each key lives",
    implemented=False,
    wanted=_tiered_wanted,
)

EVENT_SOURCING = PatternSpec(
    name="event-sourcing",
    title="Event Sourcing",
    priority=Priority.P2,
    complexity=Complexity.HIGH,
    slots={
        "store": PatternSlot(
            Slot.needs("log", durable=True),
            ("log", "messaging"),
            "durable event store (the source of truth)",
            hint="the event log is the only copy of the state",
        ),
        "views": PatternSlot(Slot.needs("keyvalue"), ("views",), "materialized views / snapshots", required=False),
    },
    config=EventSourcingSettings,
    client_apis=frozenset({"transact", "reader"}),
    summary="state is the fold of an append-only event log; views are projections",
    conflicts=frozenset({"outbox", "wal"}),
    implemented=False,
    wanted=_audit_wanted,
    defaults=_retention_default,
)

CQRS = PatternSpec(
    name="cqrs",
    title="CQRS",
    priority=Priority.P2,
    complexity=Complexity.HIGH,
    slots={
        "write": PatternSlot(Slot.needs("keyvalue"), ("store",), "write model"),
        "read": PatternSlot(Slot.needs("keyvalue"), ("read",), "read model"),
        "sync": PatternSlot(MESSAGING, ("messaging",), "change stream from write to read model", messaging=True),
    },
    config=CqrsSettings,
    client_apis=frozenset({"transact", "reader", "keyvalue"}),
    summary="separate write and read models kept in sync by a change stream",
    before=frozenset({"cdc"}),
    implemented=False,
)


@hookimpl
def prism_register_patterns() -> list[PatternSpec]:
    return [WAL, TIERED_STORAGE, EVENT_SOURCING, CQRS]
