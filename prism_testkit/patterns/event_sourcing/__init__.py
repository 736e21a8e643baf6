"""Event sourcing (RFC-009 §4): state as the fold of immutable, versioned event streams.

Write side::

    store = EventStore(driver.transactions(), driver.log(), driver.keyvalue(), EventSourcingConfig(name="bank"))
    await store.append("account-7", [NewEvent("Opened", {"owner": "ann"})], expected_version=0)
    accounts = Repository(store, Account())            # snapshots every config.snapshot_interval events
    state = await accounts.load("account-7", at_time=yesterday)   # time travel

Read side::

    runner = ProjectionRunner(store, TransactionalViews(tx, kv, "balances"), handler)
    await runner.run(stop)                              # exactly-once effect across crashes

Modules: :mod:`.store` (appends, streams, notifications), :mod:`.aggregates` (repository,
snapshots, time travel), :mod:`.upcasting`, :mod:`.views` and :mod:`.projections`.
"""

from __future__ import annotations

from collections.abc import Callable

from prism_testkit.registry.combinations import Slot
from prism_testkit.registry.hookspecs import hookimpl
from prism_testkit.registry.patterns import Complexity, NeedsContext, PatternSlot, PatternSpec, Priority, Wanted

from .aggregates import Aggregate, Loaded, Repository, Snapshot
from .config import EventSourcingConfig
from .errors import (
    CorruptStream,
    EventSourcingConfigurationError,
    EventSourcingError,
    InvalidEvent,
    ProjectionConflict,
    ProjectionTimeout,
    UnknownVersion,
    UpcastError,
    VersionConflict,
)
from .events import NewEvent, RecordedEvent
from .projections import Handler, Lag, ProjectionRunner
from .store import AppendResult, EventStore, Notification
from .upcasting import Upcasters
from .views import KeyValueViews, TransactionalViews, ViewStore, ViewWriter

__all__ = [
    "SPEC",
    "Aggregate",
    "AppendResult",
    "CorruptStream",
    "EventSourcingConfig",
    "EventSourcingConfigurationError",
    "EventSourcingError",
    "EventStore",
    "Handler",
    "InvalidEvent",
    "KeyValueViews",
    "Lag",
    "Loaded",
    "NewEvent",
    "Notification",
    "ProjectionConflict",
    "ProjectionRunner",
    "ProjectionTimeout",
    "RecordedEvent",
    "Repository",
    "Snapshot",
    "TransactionalViews",
    "UnknownVersion",
    "UpcastError",
    "Upcasters",
    "VersionConflict",
    "ViewStore",
    "ViewWriter",
]


def _wanted(ctx: NeedsContext, problem: Callable[[str, str], None]) -> list[Wanted]:
    return [("needs.audit", "audit: true")] if ctx.needs.audit else []


def _retention_default(ctx: NeedsContext) -> dict[str, object]:
    # An event store keeps everything; a finite retention need is the config's to refuse.
    retention = ctx.needs.retention
    return {} if retention is None else {"retention": retention}


SPEC = PatternSpec(
    name="event-sourcing",
    title="Event Sourcing",
    priority=Priority.P2,
    complexity=Complexity.HIGH,
    slots={
        "store": PatternSlot(
            Slot.needs("transactions", "log", "keyvalue", durable=True),
            ("store",),
            "durable event store (the source of truth): streams, notification log, snapshots",
            hint="events are the only copy of the state, and an append writes head, events and notifications "
            "in one transaction",
        ),
        "views": PatternSlot(
            Slot.needs("keyvalue.cas"), ("views",), "projections' read models and tracking positions", required=False
        ),
    },
    config=EventSourcingConfig,
    client_apis=frozenset({"transact", "reader"}),
    summary="state is the fold of immutable versioned streams; projections apply each event exactly once",
    suites=("event_sourcing", "stateful_event_sourcing", "lifecycle"),
    conflicts=frozenset({"outbox", "wal"}),
    wanted=_wanted,
    defaults=_retention_default,
)


@hookimpl
def prism_register_patterns() -> list[PatternSpec]:
    return [SPEC]
