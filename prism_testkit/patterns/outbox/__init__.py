"""Transactional outbox (RFC-009 §7): business writes and the events describing them commit in
one transaction; a separate relay publishes the events afterwards. docs/patterns.md ("The outbox
and its change-feed publisher") gives the guarantees, their limits and a worked example.

- :mod:`.errors`: the outbox's errors;
- :mod:`.codec`: the headers every event carries, and the row an event is in publisher mode cdc;
- :mod:`.config`: the config model producers and relays of one outbox share;
- :mod:`.writer`: the producer side (:class:`Outbox`, its transactions and metrics);
- :mod:`.sinks`: where the relay publishes (queue, log, pub/sub);
- :mod:`.relay`: the relay (lease, fenced offset, batches, cleanup, lifecycle);
- :mod:`.dedup`: the consumer side's :class:`Deduplicator`.

The change-feed publisher is :mod:`prism_testkit.patterns.outbox_cdc`. This module registers the
pattern.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prism_testkit.capabilities import Capability
from prism_testkit.errors import PayloadTooLarge
from prism_testkit.interfaces import TruncatableLog  # re-exported: cleanup="delete" needs a log implementing it
from prism_testkit.registry.combinations import Slot
from prism_testkit.registry.hookspecs import hookimpl
from prism_testkit.registry.patterns import (
    MESSAGING,
    CheckContext,
    Complexity,
    ConfigProblem,
    NeedsContext,
    PatternSlot,
    PatternSpec,
    Priority,
    Wanted,
)

from .codec import (
    HEADER_AGGREGATE_ID,
    HEADER_CREATED_AT,
    HEADER_EVENT_ID,
    HEADER_EVENT_TYPE,
    HEADER_SEQUENCE,
    RESERVED_HEADERS,
    decode_record,
    encode_record,
)
from .config import OutboxConfig, OutboxPublisher
from .dedup import Deduplicator
from .errors import LeaseLost, OutboxConfigurationError, OutboxError, OutboxRecordError, ReservedHeader
from .relay import OutboxRelay, RelayMetrics
from .sinks import LogSink, PubSubSink, QueueSink, Sink
from .writer import Outbox, OutboxMetrics, OutboxTransaction

__all__ = [
    "HEADER_AGGREGATE_ID",
    "HEADER_CREATED_AT",
    "HEADER_EVENT_ID",
    "HEADER_EVENT_TYPE",
    "HEADER_SEQUENCE",
    "RESERVED_HEADERS",
    "Deduplicator",
    "LeaseLost",
    "LogSink",
    "Outbox",
    "OutboxConfig",
    "OutboxConfigurationError",
    "OutboxError",
    "OutboxMetrics",
    "OutboxPublisher",
    "OutboxRecordError",
    "OutboxRelay",
    "OutboxTransaction",
    "PayloadTooLarge",
    "PubSubSink",
    "QueueSink",
    "RelayMetrics",
    "ReservedHeader",
    "Sink",
    "TruncatableLog",
    "decode_record",
    "encode_record",
]


def _wanted(ctx: NeedsContext, problem: Callable[[str, str], None]) -> list[Wanted]:
    needs = ctx.needs
    for field, selected, reason in (
        ("transactional", needs.transactional is True, "transactional: true"),
        ("consistency", needs.consistency == "strong", "consistency: strong"),
        ("delivery_guarantee", needs.delivery_guarantee == "exactly_once", "delivery_guarantee: exactly_once"),
    ):
        if selected:
            return [(f"needs.{field}", reason)]
    return []


def _check(ctx: CheckContext) -> Iterator[ConfigProblem]:
    config = ctx.config
    assert isinstance(config, OutboxConfig)
    store = ctx.slots.get("store")
    if config.cdc and store is not None and Capability.CHANGEFEED not in store.capabilities:
        yield (
            "publisher.mode",
            f"publisher mode 'cdc' publishes what the store's change feed captures, but store {store.name!r} has "
            "no change feed (backends with one: PostgreSQL logical decoding, SQLite, memstore); use mode 'relay' "
            "or such a store",
        )


SPEC = PatternSpec(
    name="outbox",
    title="Transactional Outbox",
    priority=Priority.P0,
    complexity=Complexity.LOW,
    slots={
        "store": PatternSlot(
            Slot.needs("transactions", "keyvalue", "log"),
            ("store",),
            "database writing business rows and outbox records in one transaction",
        ),
        "sink": PatternSlot(
            MESSAGING,
            ("messaging",),
            "where the relay (or, in publisher mode cdc, the change feed) publishes outbox records",
            messaging=True,
        ),
    },
    config=OutboxConfig,
    client_apis=frozenset({"queue", "pubsub", "transact"}),
    summary="business write and message in one transaction; a relay or the change feed publishes committed records",
    suites=("outbox", "stateful_outbox", "outbox_cdc", "lifecycle"),
    conflicts=frozenset({"event-sourcing"}),
    wanted=_wanted,
    check=_check,
)


@hookimpl
def prism_register_patterns() -> list[PatternSpec]:
    return [SPEC]
