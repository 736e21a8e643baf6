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


Operation = Literal["INSERT", "UPDATE", "DELETE"]


def _every_operation() -> list[Operation]:
    return ["INSERT", "UPDATE", "DELETE"]


class CdcSettings(_Settings):
    tables: list[str] = Field(default_factory=list)
    operations: list[Operation] = Field(default_factory=_every_operation)
    include_old_value: bool = True
    message_format: Literal["json", "avro", "protobuf"] = "json"


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

CDC = PatternSpec(
    name="cdc",
    title="Change Data Capture",
    priority=Priority.P1,
    complexity=Complexity.MEDIUM,
    slots={
        "source": PatternSlot(
            Slot.needs("transactions", "keyvalue", "log"), ("store",), "database whose changes are captured"
        ),
        "sink": PatternSlot(MESSAGING, ("messaging",), "where change events are published", messaging=True),
    },
    config=CdcSettings,
    client_apis=frozenset({"reader", "keyvalue", "transact"}),
    summary="changes of a database are streamed as events, without dual writes",
    implemented=False,
)


@hookimpl
def prism_register_patterns() -> list[PatternSpec]:
    return [WAL, CDC]
