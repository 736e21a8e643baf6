"""The producer side: :class:`Outbox` transactions whose business writes and events commit
together."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

import prism_testkit.simulation.clock as clocks
from prism_testkit.errors import ConnectionLost, PayloadTooLarge, PrismError
from prism_testkit.interfaces import Message, NumberingTransaction, Transaction, Transactions
from prism_testkit.pattern_sdk import metrics as prometheus

from ..claim_check import ClaimCheck, ClaimReference
from .codec import (
    HEADER_AGGREGATE_ID,
    HEADER_CREATED_AT,
    HEADER_EVENT_ID,
    HEADER_EVENT_TYPE,
    HEADER_SEQUENCE,
    RESERVED_HEADERS,
    encode_record,
)
from .config import Clock, OutboxConfig, _checked_config
from .errors import OutboxConfigurationError, ReservedHeader

log = logging.getLogger(__name__)


@dataclass
class OutboxMetrics:
    transactions_committed: int = 0
    transactions_rolled_back: int = 0
    events_committed: int = 0  # events whose transaction committed (so they are in the outbox)
    claims_written: int = 0  # with a claim check: objects written by publish()
    claims_discarded: int = 0  # objects deleted because their transaction rolled back
    claims_left_to_ttl: int = 0  # objects of failed transactions left to the claim check's TTL


class OutboxTransaction:
    """Business writes plus :meth:`publish`, all in one underlying transaction."""

    def __init__(self, outbox: Outbox, tx: Transaction) -> None:
        self._outbox = outbox
        self._tx = tx
        self.event_ids: list[str] = []
        self.claims: list[ClaimReference] = []  # objects written for this transaction's events

    async def get(self, key: str) -> bytes | None:
        return await self._tx.get(key)

    async def put(self, key: str, value: bytes) -> None:
        await self._tx.put(key, value)

    async def delete(self, key: str) -> None:
        await self._tx.delete(key)

    async def publish(
        self, aggregate_id: str, event_type: str, payload: bytes, headers: Mapping[str, str] | None = None
    ) -> str:
        """Stage an event in the outbox; it exists only if this transaction commits.

        Returns the event id (also the ``outbox-event-id`` header), stable across republishing.
        """
        config = self._outbox.config
        if not aggregate_id or not event_type:
            raise ValueError("aggregate_id and event_type must be non-empty")
        data = bytes(payload)
        if config.max_payload is not None and len(data) > config.max_payload:
            raise PayloadTooLarge(len(data), config.max_payload, "outbox event payload")
        extra = dict(headers or {})
        claim_check = self._outbox.claim_check
        reserved = RESERVED_HEADERS if claim_check is None else RESERVED_HEADERS | {claim_check.config.field}
        clashing = sorted(reserved.intersection(extra))
        if clashing:
            raise ReservedHeader(clashing)
        event_id = str(clocks.fresh_uuid())
        own = {
            HEADER_EVENT_ID: event_id,
            HEADER_AGGREGATE_ID: aggregate_id,
            HEADER_EVENT_TYPE: event_type,
            HEADER_CREATED_AT: repr(self._outbox.clock()),
        }
        numbering = (
            self._tx
            if config.aggregate_sequence and not config.cdc and isinstance(self._tx, NumberingTransaction)
            else None
        )
        if config.aggregate_sequence and numbering is None:
            # Read inside the transaction: a concurrent writer of the same aggregate makes one of
            # the two commits abort instead of both using the same number.
            key = config.sequence_key(aggregate_id)
            current = await self._tx.get(key)
            sequence = (int(current) if current is not None else 0) + 1
            await self._tx.put(key, str(sequence).encode())
            own[HEADER_SEQUENCE] = str(sequence)
        # key=aggregate_id: partitioned sinks (Kafka-like) keep one aggregate on one partition.
        message = Message(data, {**extra, **own}, key=aggregate_id)
        if claim_check is not None:
            # Written now, before the commit: the record must never point at a missing object.
            # Remembered at once, so a failure later in the block still deletes it.
            message = await claim_check.outgoing(message)
            ref = claim_check.reference(message)
            if ref is not None:
                self.claims.append(ref)
                self._outbox.metrics.claims_written += 1
        if config.cdc:
            # Debezium's outbox table: a row insert the change feed reports, in commit order.
            index = len(self.event_ids)
            await self._tx.put(config.record_key(event_id), encode_record(message, index))
        elif numbering is not None:  # the store numbers it at commit: no read round trip
            key = config.sequence_key(aggregate_id)
            await numbering.append_numbered(config.log, message, counter=key, header=HEADER_SEQUENCE)
        else:
            await self._tx.append(config.log, message)
        self.event_ids.append(event_id)
        return event_id


class Outbox:
    """The producer side: transactions whose events land in the outbox log atomically.

    With ``claim_check``, payloads above its threshold are claimed inside the transaction
    (docs/patterns.md, "Outbox and claim check"): the outbox record carries only the claim header.
    """

    def __init__(
        self,
        transactions: Transactions,
        config: OutboxConfig,
        *,
        clock: Clock = clocks.wall,
        claim_check: ClaimCheck | None = None,
    ) -> None:
        if claim_check is not None and not isinstance(claim_check, ClaimCheck):
            raise OutboxConfigurationError(f"claim_check must be a ClaimCheck, not {type(claim_check).__name__}")
        self.transactions = transactions
        self.config = _checked_config(config)
        self.clock = clock
        self.claim_check = claim_check
        self.metrics = prometheus.tracked("outbox", OutboxMetrics())

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[OutboxTransaction]:
        """Commits when the block ends, rolls back (publishing nothing) when it raises."""
        otx: OutboxTransaction | None = None
        in_block = False
        try:
            async with self.transactions.transaction() as tx:
                otx = OutboxTransaction(self, tx)
                try:
                    yield otx
                except BaseException:
                    in_block = True
                    raise
        except BaseException as exc:
            self.metrics.transactions_rolled_back += 1
            if otx is not None and otx.claims:
                # An error in the block certainly rolls back; one from the commit does only when
                # the backend said so (a prism error other than a lost connection).
                certain = in_block or (isinstance(exc, PrismError) and not isinstance(exc, ConnectionLost))
                await self._discard_claims(otx.claims, certain)
            raise
        self.metrics.transactions_committed += 1
        self.metrics.events_committed += len(otx.event_ids)

    async def _discard_claims(self, claims: list[ClaimReference], certain: bool) -> None:
        """Delete the objects of a rolled-back transaction; whatever stays is left to the TTL."""
        assert self.claim_check is not None
        if not certain:
            # The commit may have happened: deleting could leave a committed record dangling.
            self.metrics.claims_left_to_ttl += len(claims)
            log.warning("outcome of an outbox commit unknown: %d claimed objects left to their TTL", len(claims))
            return
        objects = self.claim_check.objects
        for ref in claims:
            try:
                await objects.delete(ref.bucket, ref.key)
            except Exception:
                self.metrics.claims_left_to_ttl += 1
                log.warning(
                    "could not delete claimed object %s/%s of a rolled-back outbox transaction; its TTL will",
                    ref.bucket,
                    ref.key,
                    exc_info=True,
                )
            else:
                self.metrics.claims_discarded += 1
