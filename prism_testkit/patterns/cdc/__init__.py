"""Change data capture (RFC-009 §5): committed changes of a source's key space, streamed as
Debezium-style events to any queue, log or pub/sub, with a DBLog watermark snapshot.

Usage::

    connector = CdcConnector(source.changefeed(), source.keyvalue(), LogEventSink(sink.log()), config)
    await connector.run(stop)            # or run_once() / drain() step by step

    replica = Replica()                  # consumer side: idempotent apply, per-key order
    replica.apply(message)

Registration: the ``source`` slot needs the ``changefeed`` capability, so ``prism-testkit
validate`` rejects a source without one (Redis, NATS, Kafka, S3) with the file path.
"""

from __future__ import annotations

from prism_testkit.registry.combinations import Slot
from prism_testkit.registry.hookspecs import hookimpl
from prism_testkit.registry.patterns import MESSAGING, Complexity, PatternSlot, PatternSpec, Priority

from .cache import CacheMetrics, InvalidatedCache
from .config import CdcConfig
from .connector import HEARTBEAT, CdcConnector, CdcMetrics, SnapshotState
from .events import (
    HEADER_EVENT_ID,
    HEADER_OP,
    HEADER_POSITION,
    HEADER_TABLE,
    HEADER_TXID,
    ChangeEvent,
    EventDecodeError,
    decode,
    encode,
)
from .replica import Replica
from .sinks import EventSink, LogEventSink, PubSubEventSink, QueueEventSink

__all__ = [
    "HEADER_EVENT_ID",
    "HEADER_OP",
    "HEADER_POSITION",
    "HEADER_TABLE",
    "HEADER_TXID",
    "HEARTBEAT",
    "SPEC",
    "CacheMetrics",
    "CdcConfig",
    "CdcConnector",
    "CdcMetrics",
    "ChangeEvent",
    "EventDecodeError",
    "EventSink",
    "InvalidatedCache",
    "LogEventSink",
    "PubSubEventSink",
    "QueueEventSink",
    "Replica",
    "SnapshotState",
    "decode",
    "encode",
]

SPEC = PatternSpec(
    name="cdc",
    title="Change Data Capture",
    priority=Priority.P1,
    complexity=Complexity.MEDIUM,
    slots={
        "source": PatternSlot(
            Slot.needs("changefeed", "keyvalue.scan"),
            ("store",),
            "database whose committed changes are captured",
            hint="the connector reads the backend's own change log (PostgreSQL logical decoding, the SQLite "
            "change table, memstore's feed); Redis, NATS, Kafka and S3 have none",
        ),
        "sink": PatternSlot(MESSAGING, ("messaging",), "where change events are published", messaging=True),
    },
    config=CdcConfig,
    client_apis=frozenset({"reader", "keyvalue", "transact"}),
    summary="committed changes are streamed as events, whole transactions in commit order, without dual writes",
    suites=("cdc", "stateful_cdc", "lifecycle"),
)


@hookimpl
def prism_register_patterns() -> list[PatternSpec]:
    return [SPEC]
