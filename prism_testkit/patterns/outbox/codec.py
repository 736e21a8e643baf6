"""What an outbox event looks like on the wire: the headers the outbox sets on every event, and
the key-value row an event becomes in publisher mode cdc (:func:`encode_record`)."""

from __future__ import annotations

import base64
import binascii
import json

from prism_testkit.interfaces import Message

from .errors import OutboxRecordError

HEADER_EVENT_ID = "outbox-event-id"
HEADER_AGGREGATE_ID = "outbox-aggregate-id"
HEADER_EVENT_TYPE = "outbox-event-type"
HEADER_SEQUENCE = "outbox-sequence"
HEADER_CREATED_AT = "outbox-created-at"
RESERVED_HEADERS = frozenset(
    {HEADER_EVENT_ID, HEADER_AGGREGATE_ID, HEADER_EVENT_TYPE, HEADER_SEQUENCE, HEADER_CREATED_AT}
)


def encode_record(message: Message, index: int) -> bytes:
    """The row value of an outbox event (publisher mode cdc): the message as the sink will get
    it, and its place in the transaction, since a change feed need not keep a transaction's
    writes in write order (PostgreSQL's transactions write keys sorted)."""
    body = {
        "v": 1,
        "index": index,
        "key": message.key,
        "headers": dict(message.headers),
        "payload": base64.b64encode(bytes(message.payload)).decode(),
    }
    return json.dumps(body, separators=(",", ":")).encode()


def decode_record(key: str, value: bytes) -> tuple[int, Message]:
    """(index in its transaction, message) of a row written by :func:`encode_record`."""
    try:
        body = json.loads(value)
        if body.get("v") != 1:
            raise ValueError(f"unknown record version {body.get('v')!r}")
        headers = {str(k): str(v) for k, v in body["headers"].items()}
        message = Message(base64.b64decode(body["payload"], validate=True), headers, key=body["key"])
        return int(body["index"]), message
    except (KeyError, TypeError, ValueError, AttributeError, binascii.Error) as exc:
        raise OutboxRecordError(key, f"{type(exc).__name__}: {exc}") from None
