"""What a publish returns, the attempt header, and the content digest deduplication compares."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from enum import StrEnum

from prism_testkit.interfaces import MESSAGE_ID_HEADER, Message

HEADER_ATTEMPT = "producer-attempt"


# --- outcomes ------------------------------------------------------------------------------


class PublishStatus(StrEnum):
    PUBLISHED = "published"
    DEDUPLICATED = "deduplicated"


@dataclass(frozen=True)
class PublishOutcome:
    status: PublishStatus
    message_id: str  # for a duplicate: the id of the publish it duplicates, when known
    destination: str
    attempts: int = 0  # sends it took (0 for a duplicate)

    @property
    def published(self) -> bool:
        return self.status is PublishStatus.PUBLISHED


def content_digest(destination: str, message: Message) -> str:
    """What deduplication compares: destination, key, payload and headers (the producer's own
    headers left out), as a SHA-256 hex digest."""
    headers = sorted((k, v) for k, v in message.headers.items() if k not in (MESSAGE_ID_HEADER, HEADER_ATTEMPT))
    h = hashlib.sha256()
    h.update(json.dumps([destination, message.key, headers]).encode())
    h.update(b"\0")
    h.update(bytes(message.payload))
    return h.hexdigest()
