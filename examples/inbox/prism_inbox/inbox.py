"""Idempotent consumer ("inbox"): a message's side effect and the record that its id was
processed commit in one transaction, so a redelivered copy is recognised and applied once.

    inbox = Inbox(driver.transactions(), handler, InboxConfig(processed_prefix="orders-inbox/"))
    consumer = InboxConsumer(driver.queue(), "orders", inbox)
    while True:
        await consumer.poll(wait=1.0)   # receive, process in one transaction, then ack

``handler(t, message)`` makes its writes through the transaction ``t`` it is given (key-value
puts and log appends of the same store): they commit with the processed-id record or not at
all. Written only against :class:`~prism_testkit.Transactions` and :class:`~prism_testkit.Queue`:

* **A crash before the commit** applies nothing and records nothing; the message is
  redelivered (it was never acked) and applied then.
* **A crash after the commit, before the ack** leaves the record; the redelivered copy reads
  it, applies nothing, and is acked (:attr:`Outcome.DUPLICATE`).
* **Concurrent consumers of one id** both read "not processed" and both write the record; the
  transactions contract says the later commit aborts
  (:class:`~prism_testkit.errors.TransactionAborted`) or is serialised after the first, so
  the retry reads the record: one applies, the others are duplicates. After
  ``max_attempts`` aborts in a row, :class:`InboxContention`.
* **An id reused for another message** (a different payload or key) is refused with
  :class:`MessageIdReused`, not silently dropped as a duplicate.
* **An unknown commit outcome** (:class:`~prism_testkit.errors.ConnectionLost`) propagates
  without an ack: the redelivery finds out which it was.

The record holds a SHA-256 of the message's key and payload. Records are kept forever here:
expire them (``keyvalue.ttl``) only after the queue can no longer redeliver the message.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from contextlib import suppress
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from prism_testkit import Message, Queue, QueueDelivery, Transaction, Transactions
from prism_testkit.errors import DeliveryNotFound, PrismError, TransactionAborted
from prism_testkit.interfaces import MESSAGE_ID_HEADER

__all__ = [
    "Handler",
    "Inbox",
    "InboxConfig",
    "InboxConsumer",
    "InboxContention",
    "InboxError",
    "MessageIdReused",
    "MissingMessageId",
    "Outcome",
    "fingerprint",
]


class InboxConfig(BaseModel):
    """The inbox's configuration: namespace files and code share this model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    processed_prefix: str = Field(default="inbox/", min_length=1, description="key prefix of the processed-id records")
    message_id_header: str = Field(
        default=MESSAGE_ID_HEADER, min_length=1, description="header carrying the message id"
    )
    max_attempts: int = Field(default=5, ge=1, description="commits tried when concurrent consumers of one id conflict")
    visibility_timeout: float = Field(default=30.0, gt=0, description="seconds a received message stays hidden")


class InboxError(PrismError):
    """Base class of the inbox's errors."""


class MissingMessageId(InboxError):
    """The message carries no id, so a redelivery could not be recognised: nothing is applied
    and it is not acked (route it to a dead letter)."""


class MessageIdReused(InboxError):
    """A message with an already processed id has another key or payload: a producer bug or
    a collision, never a redelivery. Nothing is applied."""


class InboxContention(InboxError):
    """Every one of ``max_attempts`` commits was aborted by a concurrent transaction."""


class Outcome(StrEnum):
    APPLIED = "applied"  # the side effect and the record committed now
    DUPLICATE = "duplicate"  # the record was there: nothing applied


Handler = Callable[[Transaction, Message], Awaitable[None]]


def fingerprint(message: Message) -> bytes:
    """What the processed-id record holds: the same message always gives the same bytes."""
    digest = hashlib.sha256()
    digest.update((message.key or "").encode() + b"\0")
    digest.update(bytes(message.payload))
    return digest.hexdigest().encode()


class Inbox:
    """Applies each message id's side effect exactly once, with its record in one transaction."""

    def __init__(self, transactions: Transactions, handler: Handler, config: InboxConfig | None = None) -> None:
        self.transactions = transactions
        self.handler = handler
        self.config = config or InboxConfig()

    def record_key(self, message_id: str) -> str:
        return f"{self.config.processed_prefix}{message_id}"

    async def processed(self, message_id: str) -> bool:
        """Whether the id's record has committed (read in a transaction of its own)."""
        async with self.transactions.transaction() as t:
            return await t.get(self.record_key(message_id)) is not None

    async def process(self, message_id: str, message: Message) -> Outcome:
        """Apply ``message`` unless ``message_id`` was processed; retried on aborts."""
        if not message_id:
            raise MissingMessageId("the message id is empty: a redelivery could not be recognised")
        key, mark = self.record_key(message_id), fingerprint(message)
        aborted: TransactionAborted | None = None
        for _ in range(self.config.max_attempts):
            try:
                return await self._once(key, mark, message_id, message)
            except TransactionAborted as exc:
                aborted = exc  # another consumer committed this id (or a key it read) first: read again
        raise InboxContention(
            f"message {message_id!r}: {self.config.max_attempts} commits in a row were aborted ({aborted})"
        )

    async def _once(self, key: str, mark: bytes, message_id: str, message: Message) -> Outcome:
        async with self.transactions.transaction() as t:
            seen = await t.get(key)
            if seen is not None:
                if seen != mark:
                    raise MessageIdReused(f"message id {message_id!r} was processed for another message")
                return Outcome.DUPLICATE
            await self.handler(t, message)
            await t.put(key, mark)
        return Outcome.APPLIED


class InboxConsumer:
    """Receives from a queue and processes through an :class:`Inbox`; acks after the commit."""

    def __init__(self, queue: Queue, queue_name: str, inbox: Inbox) -> None:
        self.queue = queue
        self.queue_name = queue_name
        self.inbox = inbox

    async def poll(self, wait: float = 0.0) -> Outcome | None:
        """Handle the next message (``None``: none came within ``wait`` seconds)."""
        delivery = await self.queue.receive(
            self.queue_name, wait=wait, visibility_timeout=self.inbox.config.visibility_timeout
        )
        return None if delivery is None else await self.handle(delivery)

    async def handle(self, delivery: QueueDelivery) -> Outcome:
        message_id = delivery.message.headers.get(self.inbox.config.message_id_header, "")
        if not message_id:
            raise MissingMessageId(
                f"a message on {self.queue_name!r} has no {self.inbox.config.message_id_header!r} header"
            )
        outcome = await self.inbox.process(message_id, delivery.message)
        # DeliveryNotFound: the visibility timeout ran out while we processed; the copy handed
        # out again finds the record and is acked as a duplicate.
        with suppress(DeliveryNotFound):
            await self.queue.ack(self.queue_name, delivery)
        return outcome


async def send(queue: Queue, queue_name: str, message_id: str, message: Message) -> str:
    """Send ``message`` with its id in the header the inbox reads (the default config's)."""
    return await queue.send(queue_name, message.with_headers(**{MESSAGE_ID_HEADER: message_id}))
