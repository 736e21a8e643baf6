"""Write-ahead log (RFC-009 §2, RFC-014 pattern 1): a mutation is appended to a *durable* log and
acknowledged; an applier writes it to the target later, idempotently, from a committed checkpoint.
docs/patterns.md ("The write-ahead log") gives the guarantees, the apply modes, their limits and a
worked example.

- :mod:`.errors`: the WAL's errors;
- :mod:`.config`: the config model writers, appliers and namespace files share, and the log's
  declared durability;
- :mod:`.codec`: a mutation, the headers of its log record, and the transform hook's type;
- :mod:`.applier`: the applier (guards, per-key retries, dead letters, checkpoints, lifecycle);
- :mod:`.group_commit`: concurrent writers sharing one log transaction;
- :mod:`.writer`: the writer side (:class:`WriteAheadLog`: receipts, apply modes,
  read-your-writes, gauges);
- :mod:`.compaction`: keep-latest compaction and replay.

This module registers the pattern.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from prism_testkit.registry.combinations import Slot
from prism_testkit.registry.hookspecs import hookimpl
from prism_testkit.registry.patterns import (
    DURABLE_LOG_HINT,
    Complexity,
    NeedsContext,
    PatternSlot,
    PatternSpec,
    Priority,
    Wanted,
)

# The `X as X` imports are re-exports outside __all__: suites and tests import them from here.
from .applier import ApplierMetrics as ApplierMetrics
from .applier import WalApplier
from .codec import HEADER_ATTEMPTS as HEADER_ATTEMPTS
from .codec import (
    HEADER_CREATED_AT,
    HEADER_ERROR,
    HEADER_KEY,
    HEADER_MUTATION_ID,
    HEADER_OP,
    HEADER_SOURCE_OFFSET,
    Mutation,
)
from .codec import Transform as Transform
from .compaction import CompactionResult, compact_keep_latest, replay
from .config import Clock as Clock
from .config import LogDurability, WalConfig
from .errors import MutationDeadLettered, NonDurableLog, WalConfigurationError, WalCorruptEntry, WalError
from .writer import WalGauges, WriteAheadLog

__all__ = [
    "HEADER_CREATED_AT",
    "HEADER_ERROR",
    "HEADER_KEY",
    "HEADER_MUTATION_ID",
    "HEADER_OP",
    "HEADER_SOURCE_OFFSET",
    "CompactionResult",
    "LogDurability",
    "Mutation",
    "MutationDeadLettered",
    "NonDurableLog",
    "WalApplier",
    "WalConfig",
    "WalConfigurationError",
    "WalCorruptEntry",
    "WalError",
    "WalGauges",
    "WriteAheadLog",
    "compact_keep_latest",
    "replay",
]


def _wanted(ctx: NeedsContext, problem: Callable[[str, str], None]) -> list[Wanted]:
    if ctx.client_api not in SPEC.client_apis:
        return []
    if ctx.needs.durability == "strong":
        return [("needs.durability", "durability: strong")]
    if ctx.needs.replay:
        return [("needs.replay", "replay: enabled")]
    return []


def _defaults(ctx: NeedsContext) -> Mapping[str, object]:
    retention = ctx.needs.retention
    if retention is None:
        return {}
    return {"retention": retention if retention != float("inf") else None}


SPEC = PatternSpec(
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
        "target": PatternSlot(
            Slot.needs("keyvalue"),
            ("target",),
            "key-value store the log is applied to (transactional ones apply each batch atomically)",
            required=False,
        ),
    },
    config=WalConfig,
    client_apis=frozenset({"queue", "pubsub", "keyvalue", "transact"}),
    summary="operations are appended to a durable log before they are acknowledged; replay and compaction",
    suites=("wal", "stateful_wal", "lifecycle"),
    conflicts=frozenset({"event-sourcing"}),
    before=frozenset({"tiered-storage"}),
    wanted=_wanted,
    defaults=_defaults,
)


@hookimpl
def prism_register_patterns() -> list[PatternSpec]:
    return [SPEC]
