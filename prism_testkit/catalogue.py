"""The pattern catalogue: what a namespace file may name, and what each pattern needs.

One entry per RFC-009 pattern: its slots (the backends it runs on, each a :class:`Slot` with
the capabilities and durability it requires), priority and complexity (RFC-009 "Implementation
Priority"), the client APIs it can sit under (RFC-014 composition matrix), its configuration
model, and the compatibility rules of RFC-009's matrix. Patterns without an implementation yet
are here so namespace files that use them can be validated; ``implemented`` says which are real.
"""

from __future__ import annotations

import importlib.util
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from prism_testkit.combinations import Slot
from prism_testkit.patterns.claim_check import ClaimCheckConfig, parse_size

ClientApi = Literal["queue", "pubsub", "keyvalue", "reader", "transact"]
CLIENT_APIS: tuple[str, ...] = ("queue", "pubsub", "keyvalue", "reader", "transact")


class Priority(StrEnum):
    P0 = "P0"
    P1 = "P1"
    P2 = "P2"


class Complexity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


# --- units ---------------------------------------------------------------------------------

SIZE_PATTERN = r"^\s*\d+\s*([kmgtKMGT]([iI]?[bB])?|[bB])?\s*$"
DURATION_PATTERN = (
    r"^\s*(infinite|forever|\d+(\.\d+)?\s*(ms|s|secs?|seconds?|m|mins?|minutes?|h|hours?|d|days?|w|weeks?)?)\s*$"
)
_DURATION = re.compile(DURATION_PATTERN, re.IGNORECASE)
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: object) -> object:
    """``"100ms"``, ``"30days"``, ``"30 days"``, ``"1h"`` or a number of seconds; ``"infinite"``
    is ``math.inf``. Other values pass through for the field's own type check."""
    if not isinstance(value, str):
        return value
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"not a duration: {value!r} (use seconds, or e.g. 100ms, 60s, 1h, 30days, infinite)")
    text = match.group(1).lower()
    if text in ("infinite", "forever"):
        return math.inf
    number, unit = re.match(r"([\d.]+)\s*([a-z]*)", text).groups()  # type: ignore[union-attr]
    scale = _SECONDS["ms"] if unit == "ms" else _SECONDS[unit[0]] if unit else 1
    return float(number) * scale


Duration = Annotated[float, BeforeValidator(parse_duration, json_schema_input_type=float | str)]
Size = Annotated[int, BeforeValidator(parse_size, json_schema_input_type=int | str)]


# --- configuration of the patterns without an implementation yet ---------------------------
# Fields follow RFC-009's examples; the models exist so typos are caught before the pattern is.


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OutboxPublisher(_Settings):
    mode: Literal["polling", "cdc"] = "polling"
    interval: Duration = Field(default=0.1, gt=0, description="seconds between polls")
    batch_size: int = Field(default=100, ge=1)


class OutboxSettings(_Settings):
    table: str = Field(default="outbox", min_length=1, description="table (or key prefix) of the outbox records")
    publisher: OutboxPublisher = OutboxPublisher()
    cleanup: Literal["delete", "mark_published"] = "delete"
    retention: Duration | None = Field(default=None, gt=0, description="keep published records this long")


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


class CdcSettings(_Settings):
    tables: list[str] = Field(default_factory=list)
    operations: list[Literal["INSERT", "UPDATE", "DELETE"]] = Field(
        default_factory=lambda: ["INSERT", "UPDATE", "DELETE"]
    )
    include_old_value: bool = True
    message_format: Literal["json", "avro", "protobuf"] = "json"


class EventSourcingSettings(_Settings):
    retention: Duration | None = Field(default=None, gt=0, description="None or infinite: keep every event")
    snapshot_interval: int | None = Field(default=100, ge=1)


class CqrsSettings(_Settings):
    lag_tolerance: Duration = Field(default=1.0, gt=0, description="alert when a read model lags more")


# --- the catalogue -------------------------------------------------------------------------


@dataclass(frozen=True)
class SlotRole:
    """One slot of a pattern. ``roles`` are the keys of a ``needs:`` namespace's ``backends:``
    map that fill it, first present wins (a WAL takes ``log``, else the ``messaging`` backend)."""

    slot: Slot
    roles: tuple[str, ...]
    description: str
    required: bool = True
    messaging: bool = False  # carries the chain's messages to consumers
    hint: str = ""  # why the requirement exists, printed with a mismatch


@dataclass(frozen=True)
class PatternInfo:
    name: str
    title: str
    priority: Priority
    complexity: Complexity
    slots: Mapping[str, SlotRole]
    config: type[BaseModel]
    client_apis: frozenset[str]
    summary: str
    module: str  # where its implementation lives (or will)
    conflicts: frozenset[str] = frozenset()
    before: frozenset[str] = field(default_factory=frozenset)  # must come before (outer to) these

    @property
    def implemented(self) -> bool:
        return importlib.util.find_spec(self.module) is not None

    @property
    def required_slots(self) -> list[str]:
        return [name for name, spec in self.slots.items() if spec.required]


MESSAGING = Slot.one_of("queue", "log", "pubsub")
_DURABLE_LOG_HINT = (
    "acknowledged entries must survive a crash, so core NATS pub/sub or an in-memory broker is not enough; "
    "JetStream, Kafka or a durable database log is"
)

_ENTRIES = [
    PatternInfo(
        name="claim-check",
        title="Claim Check",
        priority=Priority.P0,
        complexity=Complexity.LOW,
        slots={
            "messaging": SlotRole(
                MESSAGING, ("messaging",), "queue, log or topic carrying the claim reference", messaging=True
            ),
            "objects": SlotRole(Slot.needs("objects"), ("objects",), "object store holding claimed payloads"),
        },
        config=ClaimCheckConfig,
        client_apis=frozenset({"queue", "pubsub", "transact"}),
        summary="large payloads go to object storage; the message carries a reference in a named header",
        module="patterns.claim_check",
        # The payload is claimed before anything stores the message, so stores hold references.
        before=frozenset({"outbox", "wal", "event-sourcing"}),
    ),
    PatternInfo(
        name="outbox",
        title="Transactional Outbox",
        priority=Priority.P0,
        complexity=Complexity.LOW,
        slots={
            "store": SlotRole(
                Slot.needs("transactions", "keyvalue", "log"),
                ("store",),
                "database writing business rows and outbox records in one transaction",
            ),
            "sink": SlotRole(MESSAGING, ("messaging",), "where the relay publishes outbox records", messaging=True),
        },
        config=OutboxSettings,
        client_apis=frozenset({"queue", "pubsub", "transact"}),
        summary="business write and message in one transaction; a relay publishes committed records",
        module="patterns.outbox",
        conflicts=frozenset({"event-sourcing"}),
    ),
    PatternInfo(
        name="wal",
        title="Write-Ahead Log",
        priority=Priority.P1,
        complexity=Complexity.MEDIUM,
        slots={
            "log": SlotRole(
                Slot.needs("log", durable=True),
                ("log", "messaging"),
                "durable log written before the ack",
                hint=_DURABLE_LOG_HINT,
            ),
        },
        config=WalSettings,
        client_apis=frozenset({"queue", "pubsub", "keyvalue", "transact"}),
        summary="operations are appended to a durable log before they are acknowledged; replay and compaction",
        module="patterns.wal",
        conflicts=frozenset({"event-sourcing"}),
        before=frozenset({"tiered-storage"}),
    ),
    PatternInfo(
        name="tiered-storage",
        title="Tiered Storage",
        priority=Priority.P1,
        complexity=Complexity.MEDIUM,
        slots={
            "hot": SlotRole(Slot.needs("keyvalue"), ("hot",), "fast tier for recent data"),
            "warm": SlotRole(Slot.needs("keyvalue"), ("warm",), "optional middle tier", required=False),
            "cold": SlotRole(
                Slot.needs("objects", durable=True), ("cold",), "archive tier", hint="the archive is the last copy"
            ),
            "reference": SlotRole(
                Slot.needs("keyvalue", durable=True),
                ("reference",),
                "reference store recording which tier holds each key",
                hint="without it no read can find data that left the hot tier",
            ),
        },
        config=TieredStorageSettings,
        client_apis=frozenset({"queue", "pubsub", "keyvalue", "reader"}),
        summary="data moves hot -> warm -> cold with age; a reference store says where each key lives",
        module="patterns.tiered_storage",
    ),
    PatternInfo(
        name="cdc",
        title="Change Data Capture",
        priority=Priority.P1,
        complexity=Complexity.MEDIUM,
        slots={
            "source": SlotRole(
                Slot.needs("transactions", "keyvalue", "log"), ("store",), "database whose changes are captured"
            ),
            "sink": SlotRole(MESSAGING, ("messaging",), "where change events are published", messaging=True),
        },
        config=CdcSettings,
        client_apis=frozenset({"reader", "keyvalue", "transact"}),
        summary="changes of a database are streamed as events, without dual writes",
        module="patterns.cdc",
    ),
    PatternInfo(
        name="event-sourcing",
        title="Event Sourcing",
        priority=Priority.P2,
        complexity=Complexity.HIGH,
        slots={
            "store": SlotRole(
                Slot.needs("log", durable=True),
                ("log", "messaging"),
                "durable event store (the source of truth)",
                hint="the event log is the only copy of the state",
            ),
            "views": SlotRole(Slot.needs("keyvalue"), ("views",), "materialized views / snapshots", required=False),
        },
        config=EventSourcingSettings,
        client_apis=frozenset({"transact", "reader"}),
        summary="state is the fold of an append-only event log; views are projections",
        module="patterns.event_sourcing",
        conflicts=frozenset({"outbox", "wal"}),
    ),
    PatternInfo(
        name="cqrs",
        title="CQRS",
        priority=Priority.P2,
        complexity=Complexity.HIGH,
        slots={
            "write": SlotRole(Slot.needs("keyvalue"), ("store",), "write model"),
            "read": SlotRole(Slot.needs("keyvalue"), ("read",), "read model"),
            "sync": SlotRole(MESSAGING, ("messaging",), "change stream from write to read model", messaging=True),
        },
        config=CqrsSettings,
        client_apis=frozenset({"transact", "reader", "keyvalue"}),
        summary="separate write and read models kept in sync by a change stream",
        module="patterns.cqrs",
        before=frozenset({"cdc"}),
    ),
]

CATALOGUE: dict[str, PatternInfo] = {entry.name: entry for entry in _ENTRIES}
ROLES: tuple[str, ...] = tuple(
    sorted({role for entry in _ENTRIES for spec in entry.slots.values() for role in spec.roles})
)
