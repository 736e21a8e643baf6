"""Debezium-style change events: the envelope, its headers, and decoding for consumers.

Payload (JSON)::

    {"op": "c" | "u" | "d" | "r" | "t",
     "before": {"key": ..., "value": <base64>} | null,
     "after":  {"key": ..., "value": <base64>} | null,
     "source": {"connector": "prism", "capture": ..., "table": ..., "key": ..., "position": ...,
                "txid": ..., "snapshot": false, "epoch": 0, "ts_ms": <commit time>},
     "transaction": {"id": ..., "total_order": 1.., "total": n},
     "ts_ms": <publish time>}

``before``/``after`` are key-value rows. ``transaction.total`` lets a consumer see that it has
all events of a transaction; ``(epoch, position, total_order)`` orders events and is the stable
event id's tail, so a republished event carries the same id.

``epoch`` counts the captures a connector started afresh after the source lost one (a
failover): positions of a new capture need not continue the old one's (a promoted standby's
WAL forks below what the old primary decoded), so the epoch orders first. A new epoch opens
with a truncate (``t``, no key): everything a consumer holds from earlier epochs is void, and
the new epoch's snapshot rows and changes replace it.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Literal

from prism_testkit.interfaces import Message

HEADER_EVENT_ID = "cdc-event-id"
HEADER_OP = "cdc-op"
HEADER_TABLE = "cdc-table"
HEADER_POSITION = "cdc-position"
HEADER_TXID = "cdc-txid"

Op = Literal["c", "u", "d", "r", "t"]


class EventDecodeError(ValueError):
    """A message is not a CDC event this module wrote."""


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    event_id: str
    op: Op
    table: str
    key: str
    before: bytes | None
    after: bytes | None
    position: int
    txid: str
    total_order: int  # 1-based place in its transaction (snapshot rows: in their chunk)
    total: int  # events of its transaction (of the chunk, for snapshot rows)
    commit_ts_ms: int
    ts_ms: int
    snapshot: bool = False
    epoch: int = 0

    @property
    def order(self) -> tuple[int, int, int]:
        """Sort key of events: epoch, commit order, then order inside the transaction."""
        return self.epoch, self.position, self.total_order


def _row(key: str, value: bytes | None) -> dict[str, str] | None:
    return None if value is None else {"key": key, "value": base64.b64encode(value).decode()}


def encode(event: ChangeEvent, capture: str) -> Message:
    body: dict[str, Any] = {
        "op": event.op,
        "before": _row(event.key, event.before),
        "after": _row(event.key, event.after),
        "source": {
            "connector": "prism",
            "capture": capture,
            "table": event.table,
            "key": event.key,
            "position": event.position,
            "txid": event.txid,
            "snapshot": event.snapshot,
            "epoch": event.epoch,
            "ts_ms": event.commit_ts_ms,
        },
        "transaction": {"id": event.txid, "total_order": event.total_order, "total": event.total},
        "ts_ms": event.ts_ms,
    }
    headers = {
        HEADER_EVENT_ID: event.event_id,
        HEADER_OP: event.op,
        HEADER_TABLE: event.table,
        HEADER_POSITION: str(event.position),
        HEADER_TXID: event.txid,
    }
    return Message(json.dumps(body, separators=(",", ":")).encode(), headers, key=event.key)


def decode(message: Message) -> ChangeEvent:
    """The event in ``message`` (raises :class:`EventDecodeError` for anything else)."""
    try:
        body = json.loads(bytes(message.payload))
        source, tx = body["source"], body["transaction"]
        before, after = body["before"], body["after"]
        return ChangeEvent(
            event_id=message.headers[HEADER_EVENT_ID],
            op=body["op"],
            table=source["table"],
            key=source["key"],
            before=None if before is None else base64.b64decode(before["value"]),
            after=None if after is None else base64.b64decode(after["value"]),
            position=int(source["position"]),
            txid=str(source["txid"]),
            total_order=int(tx["total_order"]),
            total=int(tx["total"]),
            commit_ts_ms=int(source["ts_ms"]),
            ts_ms=int(body["ts_ms"]),
            snapshot=bool(source["snapshot"]),
            epoch=int(source.get("epoch", 0)),  # events written before epochs existed
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise EventDecodeError(f"not a CDC event: {type(exc).__name__}: {exc}") from None
