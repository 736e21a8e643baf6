"""Transactional outbox (RFC-009 §7): business writes and the events describing them commit in
one transaction; a separate relay publishes the events afterwards.

The outbox is a :class:`Log` written through :class:`Transactions`, so an event record exists
if and only if its transaction committed, and the interface assigns its offset *at commit, in
commit order*. That is what lets the relay follow the outbox by offset without the classic
polling bug (a reader by sequence id skips rows that commit out of id order): a transaction that
began early but committed late simply gets a later offset.

Producer::

    outbox = Outbox(driver.transactions(), OutboxConfig(log="orders-outbox"))
    async with outbox.transaction() as tx:
        await tx.put(f"order/{order_id}", order_bytes)
        await tx.publish(order_id, "OrderCreated", event_bytes)   # same transaction

Relay (run one per process; any number may run, only the lease holder publishes)::

    relay = OutboxRelay(driver.log(), driver.keyvalue(), QueueSink(queue, "orders"), config, "relay-a")
    await relay.run(stop_event)

Guarantees and their limits:

* **No event without its write, no write without its event**: both are one transaction; a
  rolled-back block publishes nothing.
* **At-least-once**: the relay publishes a batch, then commits its offset. A relay killed in
  between republishes the batch on restart; every event carries a stable ``outbox-event-id``
  header so consumers can drop duplicates (:class:`Deduplicator`).
* **Per-aggregate order**: one relay at a time publishes (a lease in the relay's key-value,
  taken with compare-and-set and carrying its own expiry, so it never depends on the backend's
  TTL), and it publishes strictly in offset order. Several pollers without such a lock would
  publish duplicates, and ``SKIP LOCKED``-style sharing of one outbox between relays would
  reorder an aggregate's events; neither is done here.
* **Fencing**: every lease acquisition gets a higher epoch, stored with the relay offset. A relay
  whose lease was taken over cannot commit over its successor and never moves the offset
  backwards. A relay stops publishing before the next batch when its renewal fails, and mid-batch
  as soon as its own clock says the lease is about to run out. A single ``sink.publish`` that
  hangs past the lease can still overlap with the successor's first batch: that yields
  duplicates (same event ids), and the ``outbox-sequence`` header lets consumers detect it.
* **Per-aggregate sequence**: ``outbox-sequence`` is 1, 2, 3... per aggregate, kept in a key of
  the same transaction, so sequence order equals commit order equals offset order. A store that
  numbers appends at commit (``transactions.numbering``) does it under the commit's own locks:
  no read round trip, and concurrent writers of one aggregate both commit. Elsewhere the key is
  read and bumped inside the transaction, and its optimistic concurrency makes that honest: two
  concurrent transactions of one aggregate cannot both commit the same number (one fails with
  :class:`~prism_testkit.errors.TransactionAborted`); turn it off (``aggregate_sequence=False``)
  when such writers must not conflict. The change-feed publisher always reads and bumps.

Publisher mode ``cdc`` (``OutboxConfig(publisher=OutboxPublisher(mode="cdc"))``): events are
written as key-value rows in the same transaction and the store's change feed publishes them
(:mod:`~prism_testkit.patterns.outbox_cdc`, Debezium's outbox event router) instead of the relay.

Cleanup: the :class:`Log` interface cannot delete records, so the default policy,
``"mark-published"``, keeps every record (the outbox doubles as an audit trail) and the relay's
committed offset is the "published" mark: everything below it has been published. ``"delete"``
physically truncates published records older than ``retention`` and is accepted only when the
log also implements :class:`TruncatableLog` (no built-in backend does yet); otherwise
constructing the relay raises :class:`OutboxConfigurationError`.

Outbox + claim check (RFC-009 composition), two ways:

* **Claimed in the transaction** (``Outbox(..., claim_check=cc)``): :meth:`OutboxTransaction.publish`
  writes a large payload to the object store *before* the commit and stages an outbox record
  that carries only the claim header (empty payload), so big payloads never sit in the
  transactional store. A block that raises, or a commit that certainly failed
  (:class:`~prism_testkit.errors.TransactionAborted` and other prism errors), deletes the objects
  it wrote. What cannot be deleted (the delete fails, the process dies before it, or the commit
  outcome is unknown: :class:`~prism_testkit.errors.ConnectionLost` or a non-prism error) stays
  until the claim check's ``ttl`` or the bucket's lifecycle policy removes it: that is the
  garbage-collection path, so give ``cc`` a ``ttl`` well above the longest relay lag. Relays
  publish the claimed record as it is; consumers restore it with ``cc.incoming`` (or read through
  :class:`~prism_testkit.patterns.claim_check.ClaimCheckQueue` / ``ClaimCheckLog`` / ``ClaimCheckPubSub`` or a
  chain with the same claim check configuration).
* **Claimed at relay time**: give the relay a sink over :class:`~prism_testkit.patterns.claim_check.ClaimCheckQueue`
  (or ``ClaimCheckLog`` / ``ClaimCheckPubSub``); large payloads are then claimed at publish time
  and the outbox keeps the original.

Do not claim on both sides with different configurations: a sink-side claim check passes an
already claimed message through only when the reference lies in its own bucket and prefix.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import ClassVar, Literal, NoReturn, Protocol, Self, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, model_validator

import prism_testkit.simulation.clock as clocks
from prism_testkit.capabilities import Capability
from prism_testkit.config.units import Duration, Size
from prism_testkit.errors import ConfigurationError, ConnectionLost, PayloadTooLarge, PrismError
from prism_testkit.interfaces import (
    KeyValue,
    Log,
    Message,
    NumberingTransaction,
    PubSub,
    Queue,
    Record,
    Transaction,
    Transactions,
    TruncatableLog,  # re-exported: the outbox's cleanup="delete" needs it
)
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
from prism_testkit.report import metrics as prometheus

from .claim_check import ClaimCheck, ClaimReference
from .lifecycle import DEFAULT_FORCE_TIMEOUT, DEFAULT_GRACEFUL_TIMEOUT, BatchProcess

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

log = logging.getLogger(__name__)

HEADER_EVENT_ID = "outbox-event-id"
HEADER_AGGREGATE_ID = "outbox-aggregate-id"
HEADER_EVENT_TYPE = "outbox-event-type"
HEADER_SEQUENCE = "outbox-sequence"
HEADER_CREATED_AT = "outbox-created-at"
RESERVED_HEADERS = frozenset(
    {HEADER_EVENT_ID, HEADER_AGGREGATE_ID, HEADER_EVENT_TYPE, HEADER_SEQUENCE, HEADER_CREATED_AT}
)

# A relay stops a batch when less than this share of its lease is left: the successor's clock
# may run slightly ahead of ours.
_LEASE_SAFETY = 0.2

Clock = Callable[[], float]


# --- errors --------------------------------------------------------------------------------


class OutboxError(PrismError):
    """Base of the outbox's errors."""


class OutboxConfigurationError(OutboxError, ConfigurationError):
    """The outbox or relay was set up with values or interfaces that cannot work."""


class ReservedHeader(OutboxError):
    """Caller headers tried to set one of the outbox's own headers (event id, sequence...)."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        super().__init__(f"headers {', '.join(names)} are set by the outbox and cannot be given")


class LeaseLost(OutboxError):
    """This relay no longer holds the relay lease (it expired and another relay took it, or a
    newer epoch committed the offset). It published nothing after noticing."""

    def __init__(self, relay_id: str, detail: str) -> None:
        self.relay_id = relay_id
        super().__init__(f"relay {relay_id!r} lost its lease: {detail}")


# --- configuration -------------------------------------------------------------------------


class OutboxPublisher(BaseModel):
    """Who publishes the outbox's records: the polling relay, or the store's change feed.

    ``cdc`` (Debezium's outbox event router): each event is written, in the producer's
    transaction, as a key-value row under ``record_prefix`` instead of a log append, and
    :class:`~prism_testkit.patterns.outbox_cdc.OutboxCdcPublisher` publishes the rows the change
    feed reports as inserted, confirming the feed's position only after the sink acknowledged.
    The store must have a change feed (PostgreSQL, SQLite, memstore).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    mode: Literal["relay", "cdc"] = Field(
        default="relay", description="relay: poll the outbox log; cdc: publish what the store's change feed captures"
    )
    capture: str | None = Field(
        default=None, min_length=1, description="with mode cdc: the change-feed capture; default '<log>-cdc'"
    )
    record_prefix: str | None = Field(
        default=None, min_length=1, description="with mode cdc: key prefix of outbox rows; default '<log>-records/'"
    )
    heartbeat_interval: Duration = Field(
        default=5.0, gt=0, description="with mode cdc: an idle capture confirms a heartbeat this often (frees WAL)"
    )


class OutboxConfig(BaseModel):
    """Shared by producers (:class:`Outbox`) and relays (:class:`OutboxRelay`) of one outbox.

    Key names left empty derive from ``log`` (``<log>-<group>-lease``, ``<log>-<group>-offset``,
    ``<log>-seq-<aggregate>``), so they live under the same name prefix as the outbox itself.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    log: str = Field(default="outbox", min_length=1, description="the outbox log")
    group: str = Field(default="outbox-relay", min_length=1, description="relay group: one lease and one offset")
    batch_size: int = Field(default=100, ge=1, description="records read and published per batch")
    poll_interval: Duration = Field(default=0.1, gt=0, description="seconds between polls when the outbox is drained")
    lease_ttl: Duration = Field(default=10.0, gt=0, description="seconds a relay lease lasts without renewal")
    lease_key: str | None = Field(default=None, min_length=1, description="key-value key of the relay lease")
    offset_key: str | None = Field(default=None, min_length=1, description="key-value key of the relay offset")
    aggregate_sequence: bool = Field(default=True, description="number each aggregate's events 1, 2, 3...")
    sequence_prefix: str | None = Field(default=None, min_length=1, description="key prefix of sequence counters")
    cleanup: Literal["mark-published", "delete"] = Field(
        default="mark-published",
        description="keep records (the relay offset marks them published), or truncate published ones",
    )
    retention: Duration = Field(
        default=86400.0, ge=0, description="with cleanup='delete': keep published records this long"
    )
    max_payload: Size | None = Field(default=None, ge=0, description="reject larger event payloads (bytes)")
    publisher: OutboxPublisher = Field(
        default_factory=OutboxPublisher, description="relay (default) or cdc: who publishes committed records"
    )

    @model_validator(mode="after")
    def _lease_outlives_polls(self) -> Self:
        # A relay renews once per poll; a lease shorter than the poll interval would lapse
        # between polls and hand over on every idle tick.
        if self.lease_ttl <= 2 * self.poll_interval:
            raise ValueError(f"lease_ttl ({self.lease_ttl}) must exceed twice poll_interval ({self.poll_interval})")
        return self

    @model_validator(mode="after")
    def _cdc_keeps_records(self) -> Self:
        # The change feed's confirmed position is the "published" mark; deleting rows after it
        # would need a retention clock the feed does not have (not built yet).
        if self.publisher.mode == "cdc" and self.cleanup == "delete":
            raise ValueError("publisher mode 'cdc' supports cleanup='mark-published' only, found 'delete'")
        return self

    @property
    def cdc(self) -> bool:
        return self.publisher.mode == "cdc"

    @property
    def capture(self) -> str:
        return self.publisher.capture or f"{self.log}-cdc"

    @property
    def record_prefix(self) -> str:
        return self.publisher.record_prefix or f"{self.log}-records/"

    def record_key(self, event_id: str) -> str:
        return f"{self.record_prefix}{event_id}"

    @property
    def lease(self) -> str:
        return self.lease_key or f"{self.log}-{self.group}-lease"

    @property
    def offset(self) -> str:
        return self.offset_key or f"{self.log}-{self.group}-offset"

    def sequence_key(self, aggregate_id: str) -> str:
        return f"{self.sequence_prefix or f'{self.log}-seq-'}{aggregate_id}"


class OutboxRecordError(OutboxError):
    """A row under the outbox's record prefix is not an outbox record this module wrote."""

    def __init__(self, key: str, detail: str) -> None:
        self.key = key
        super().__init__(f"outbox row {key!r} is not an outbox record: {detail}")


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


def _checked_config(config: object) -> OutboxConfig:
    if not isinstance(config, OutboxConfig):
        raise OutboxConfigurationError(f"config must be an OutboxConfig, not {type(config).__name__}")
    return config


# --- metrics -------------------------------------------------------------------------------


@dataclass
class OutboxMetrics:
    transactions_committed: int = 0
    transactions_rolled_back: int = 0
    events_committed: int = 0  # events whose transaction committed (so they are in the outbox)
    claims_written: int = 0  # with a claim check: objects written by publish()
    claims_discarded: int = 0  # objects deleted because their transaction rolled back
    claims_left_to_ttl: int = 0  # objects of failed transactions left to the claim check's TTL


@dataclass
class RelayMetrics:
    # the rest count up (prism_testkit.report.metrics)
    GAUGES: ClassVar[frozenset[str]] = frozenset({"truncated_below"})

    batches: int = 0  # batches that published at least one record
    events_relayed: int = 0  # sink.publish calls that returned (republished duplicates included)
    publish_failures: int = 0
    offset_commits: int = 0
    lease_acquisitions: int = 0
    lease_renewals: int = 0
    leases_lost: int = 0
    standby_polls: int = 0  # polls that found another relay holding the lease
    batches_cut_short: int = 0  # batches stopped because the lease was about to expire
    truncated_below: int = 0  # with cleanup='delete': records below this offset were deleted


# --- producer side -------------------------------------------------------------------------


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

    With ``claim_check``, payloads above its threshold are claimed inside the transaction (see
    the module docstring): the outbox record carries only the claim header.
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
        self.metrics = prometheus.noted("outbox", OutboxMetrics())

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


# --- sinks ---------------------------------------------------------------------------------


@runtime_checkable
class Sink(Protocol):
    """Where the relay publishes. Must raise when the message may not have been published."""

    async def publish(self, message: Message) -> None: ...


def _route(destination: str, message: Message) -> str:
    """``"orders.{event_type}"`` → ``"orders.OrderCreated"`` (RFC-009's ``topic_pattern``)."""
    if "{" not in destination:
        return destination
    return destination.format_map(
        {
            "event_type": message.headers.get(HEADER_EVENT_TYPE, ""),
            "aggregate_id": message.headers.get(HEADER_AGGREGATE_ID, ""),
        }
    )


def _checked_destination(destination: str) -> str:
    try:
        _route(destination, Message(b"", {HEADER_EVENT_TYPE: "t", HEADER_AGGREGATE_ID: "a"}))
    except (KeyError, IndexError, ValueError) as exc:
        raise OutboxConfigurationError(
            f"destination {destination!r} may only use {{event_type}} and {{aggregate_id}} ({exc!r})"
        ) from None
    if not destination:
        raise OutboxConfigurationError("destination must be non-empty")
    return destination


class QueueSink:
    def __init__(self, queue: Queue, destination: str) -> None:
        self.queue = queue
        self.destination = _checked_destination(destination)

    async def publish(self, message: Message) -> None:
        await self.queue.send(_route(self.destination, message), message)


class LogSink:
    def __init__(self, log: Log, destination: str) -> None:
        self.log = log
        self.destination = _checked_destination(destination)

    async def publish(self, message: Message) -> None:
        await self.log.append(_route(self.destination, message), message)


class PubSubSink:
    """Pub/sub is at-most-once for subscribers that are not listening: prefer a queue or log
    sink when every consumer must see every event."""

    def __init__(self, pubsub: PubSub, destination: str) -> None:
        self.pubsub = pubsub
        self.destination = _checked_destination(destination)

    async def publish(self, message: Message) -> None:
        await self.pubsub.publish(_route(self.destination, message), message)


# --- relay ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Lease:
    holder: str
    epoch: int
    expires_at: float

    def encode(self) -> bytes:
        return json.dumps({"holder": self.holder, "epoch": self.epoch, "expires_at": self.expires_at}).encode()

    @classmethod
    def decode(cls, raw: bytes) -> _Lease:
        data = json.loads(raw)
        return cls(str(data["holder"]), int(data["epoch"]), float(data["expires_at"]))


@dataclass(frozen=True, slots=True)
class _Offset:
    offset: int
    epoch: int  # epoch of the lease that committed it: the fencing token

    def encode(self) -> bytes:
        return json.dumps({"offset": self.offset, "epoch": self.epoch}).encode()

    @classmethod
    def decode(cls, raw: bytes | None) -> _Offset:
        if raw is None:
            return cls(0, 0)
        data = json.loads(raw)
        return cls(int(data["offset"]), int(data["epoch"]))


class OutboxRelay(BatchProcess):
    """Publishes committed outbox records to ``sink`` in offset order, at least once.

    ``kv`` (it needs compare-and-set) holds the lease and the relay offset; it may be a
    different store from the outbox log. ``relay_id`` must be unique among running relays: a
    relay restarted under the same id takes its lease back at once (with a new epoch).

    Drive it with :meth:`run_once` / :meth:`run`, or as a lifecycle process: :meth:`start`,
    :meth:`health`, :meth:`stop` (``within=``). A stop lets the batch in hand be published and
    committed, then gives the lease back; forced (the bound ran out: the sink or the store
    hangs), the batch is cancelled, what was published is committed if the store answers, and
    the report names the records left (``record N of LOG``), which the next relay over the same
    store publishes again (at least once: the record in flight may have been published).
    """

    pattern_name = "outbox-relay"

    def __init__(
        self,
        log: Log,
        kv: KeyValue,
        sink: Sink,
        config: OutboxConfig,
        relay_id: str,
        *,
        clock: Clock = clocks.wall,
        graceful_timeout: float = DEFAULT_GRACEFUL_TIMEOUT,
        force_timeout: float = DEFAULT_FORCE_TIMEOUT,
        health_timeout: float = 5.0,
    ) -> None:
        self.config = _checked_config(config)
        super().__init__(
            graceful_timeout=graceful_timeout,
            force_timeout=force_timeout,
            health_timeout=health_timeout,
            idle_wait=self.config.poll_interval,
        )
        if config.cdc:
            raise OutboxConfigurationError(
                "this outbox's publisher mode is 'cdc': its records are rows the change feed publishes "
                "(OutboxCdcPublisher), the relay would find an empty log"
            )
        if not relay_id:
            raise OutboxConfigurationError("relay_id must be non-empty (it identifies the lease holder)")
        if not isinstance(sink, Sink):
            raise OutboxConfigurationError(f"sink {type(sink).__name__} has no async publish(message)")
        if config.cleanup == "delete" and not isinstance(log, TruncatableLog):
            raise OutboxConfigurationError(
                f"cleanup='delete' needs a log with truncate(log, before); {type(log).__name__} has none "
                "(use cleanup='mark-published')"
            )
        self.log = log
        self.kv = kv
        self.sink = sink
        self.relay_id = relay_id
        self.clock = clock
        self.metrics = prometheus.noted("outbox_relay", RelayMetrics())
        self._lease: _Lease | None = None  # the lease we hold, as last written by us
        # The relay offset as we last wrote or read it under our lease's epoch; None when unknown.
        self._position: _Offset | None = None
        # For cleanup='delete': (end offset, window opened at, last published at).
        self._published_windows: list[tuple[int, float, float]] = []
        # The batch in hand: [first record not yet committed, end of the batch); None between batches.
        self._batch: tuple[int, int] | None = None

    # -- observability ----------------------------------------------------------------------

    @property
    def holds_lease(self) -> bool:
        """Whether this relay believes it holds the lease (and its clock says it has not expired)."""
        return self._lease is not None and self.clock() < self._lease.expires_at

    async def committed(self) -> int:
        """Offset below which every record has been published."""
        return _Offset.decode(await self.kv.get(self.config.offset)).offset

    async def pending(self) -> int:
        """Records committed to the outbox but not yet relayed."""
        return max(0, await self.log.end_offset(self.config.log) - await self.committed())

    async def lag(self) -> float:
        """Seconds since the oldest unrelayed record was created (0.0 when none is pending)."""
        records = await self.log.read(self.config.log, await self.committed(), limit=1)
        if not records:
            return 0.0
        created = records[0].message.headers.get(HEADER_CREATED_AT)
        return 0.0 if created is None else max(0.0, self.clock() - float(created))

    # -- lease ------------------------------------------------------------------------------

    async def _acquire_or_renew(self) -> bool:
        """Take or extend the lease. False when another relay holds it; :class:`LeaseLost` when
        we held it and someone took it meanwhile."""
        key = self.config.lease
        mine = self._lease
        if mine is not None:
            # Against the lease as we wrote it: one round trip while nobody else touched it.
            renewed = _Lease(self.relay_id, mine.epoch, self.clock() + self.config.lease_ttl)
            if await self.kv.compare_and_set(key, mine.encode(), renewed.encode()):
                self._lease = renewed
                self.metrics.lease_renewals += 1
                return True
        raw = await self.kv.get(key)
        current = None if raw is None else _Lease.decode(raw)
        now = self.clock()
        if current is not None and mine is not None and (current.holder, current.epoch) == (self.relay_id, mine.epoch):
            renewed = _Lease(self.relay_id, mine.epoch, now + self.config.lease_ttl)
            if await self.kv.compare_and_set(key, raw, renewed.encode()):
                self._lease = renewed
                self.metrics.lease_renewals += 1
                return True
            self._lose("the lease changed while it was being renewed")
        if mine is not None:
            # A different holder or epoch: ours expired and was taken (or the key was removed).
            self._lose("another relay holds it" if current is not None else "the lease key disappeared")
        # Our own id on an unexpired lease we do not know: a previous incarnation of this relay
        # (relay ids are unique per running relay), so take it back now rather than after a TTL.
        if current is not None and current.expires_at > now and current.holder != self.relay_id:
            self.metrics.standby_polls += 1
            return False
        # A new epoch on every acquisition fences out whoever held the previous one.
        taken = _Lease(self.relay_id, (current.epoch if current else 0) + 1, now + self.config.lease_ttl)
        if not await self.kv.compare_and_set(key, raw, taken.encode()):
            self.metrics.standby_polls += 1  # another standby won the race
            return False
        self._lease = taken
        self.metrics.lease_acquisitions += 1
        log.info("relay %s acquired the outbox lease for %s (epoch %d)", self.relay_id, self.config.log, taken.epoch)
        return True

    def _lose(self, detail: str) -> NoReturn:
        self._lease = self._position = None
        self.metrics.leases_lost += 1
        raise LeaseLost(self.relay_id, detail)

    def _lease_running_out(self) -> bool:
        lease = self._lease
        return lease is None or self.clock() >= lease.expires_at - _LEASE_SAFETY * self.config.lease_ttl

    async def release(self) -> None:
        """Give the lease up (expire it) so a standby takes over at its next poll."""
        lease, self._lease, self._position = self._lease, None, None
        if lease is None:
            return
        expired = _Lease(lease.holder, lease.epoch, 0.0)
        await self.kv.compare_and_set(self.config.lease, lease.encode(), expired.encode())

    # -- offsets ----------------------------------------------------------------------------

    async def _fence(self, epoch: int) -> int:
        """Stamp our epoch on the relay offset before publishing, so a relay still running on an
        older lease can commit nothing more; returns the offset to publish from."""
        known = self._position
        if known is not None and known.epoch == epoch:
            # Fenced already, and the lease was renewed unchanged since: nobody else can have
            # taken a newer epoch, so nobody else wrote the offset.
            return known.offset
        key = self.config.offset
        while True:
            raw = await self.kv.get(key)
            current = _Offset.decode(raw)
            if current.epoch > epoch:
                self._lose(f"epoch {current.epoch} already owns the relay offset (ours is {epoch})")
            if current.epoch == epoch or await self.kv.compare_and_set(
                key, raw, _Offset(current.offset, epoch).encode()
            ):
                self._position = _Offset(current.offset, epoch)
                return current.offset

    async def _commit(self, offset: int, epoch: int) -> None:
        """Move the relay offset forward to ``offset``, fenced by ``epoch``."""
        if not await self._move_offset(offset, epoch):
            return
        self.metrics.offset_commits += 1
        # Informational mirror for tools that read group offsets (Log.commit is not fenced).
        await self.log.commit(self.config.log, self.config.group, offset)

    async def _move_offset(self, offset: int, epoch: int) -> bool:
        key, target = self.config.offset, _Offset(offset, epoch)
        known, self._position = self._position, None  # unknown until this write's outcome is
        # Against the offset as we last saw it: one round trip while nobody else wrote it.
        if (
            known is not None
            and known.epoch == epoch
            and known.offset < offset
            and await self.kv.compare_and_set(key, known.encode(), target.encode())
        ):
            self._position = target
            return True
        while True:
            raw = await self.kv.get(key)
            current = _Offset.decode(raw)
            if current.epoch > epoch:
                self._lose(f"epoch {current.epoch} took over the relay offset (ours is {epoch})")
            if current.offset >= offset:
                self._position = current if current.epoch == epoch else None
                return False  # never backwards
            if await self.kv.compare_and_set(key, raw, target.encode()):
                self._position = target
                return True

    # -- relaying ---------------------------------------------------------------------------

    async def _next_batch(self) -> tuple[int, int, list[Record]] | None:
        """Take or renew the lease, fence the relay offset with its epoch and read the records
        from there: (epoch, first offset, records), or None on standby."""
        if not await self._acquire_or_renew():
            return None
        assert self._lease is not None
        epoch = self._lease.epoch
        start = await self._fence(epoch)
        return epoch, start, await self.log.read(self.config.log, start, limit=self.config.batch_size)

    async def run_once(self) -> int:
        """Publish one batch if this relay holds (or can take) the lease; returns how many
        records it published (0 when drained or on standby).

        Raises :class:`LeaseLost` when the lease was lost (nothing more was published), or the
        sink's error after committing the records published before it.
        """
        batch = await self._next_batch()
        if batch is None:
            return 0
        epoch, start, records = batch
        done = start
        end = records[-1].offset + 1 if records else start
        self._batch = (start, end) if records else None
        try:
            for record in records:
                if record.offset != done:
                    raise OutboxError(f"outbox log {self.config.log!r} skipped from offset {done} to {record.offset}")
                if self._lease_running_out():
                    # Stop before the successor may start: it would republish from our last commit.
                    self.metrics.batches_cut_short += 1
                    break
                try:
                    await self.sink.publish(record.message)
                except Exception:
                    self.metrics.publish_failures += 1
                    raise
                self.metrics.events_relayed += 1
                done = record.offset + 1
        finally:
            # Also on failure or cancellation: what was published need not be published again.
            if done > start:
                self.metrics.batches += 1
                await self._commit(done, epoch)
            self._batch = (done, end) if done < end else None  # what a cancelled batch left
        if done > start and self.config.cleanup == "delete":
            await self._cleanup(done)
        return done - start

    async def _cleanup(self, committed: int) -> None:
        """Truncate what was published more than ``retention`` seconds ago.

        Batches are grouped into at most ~64 windows per retention period so memory stays
        bounded; a window counts as published at its *last* batch, so records are kept at least
        ``retention`` (never less). The windows live in memory: after a handover the new lease
        holder starts counting afresh, which only delays truncation.
        """
        now = self.clock()
        windows = self._published_windows
        if windows and now - windows[-1][1] < self.config.retention / 64:
            windows[-1] = (committed, windows[-1][1], now)
        else:
            windows.append((committed, now, now))
        cutoff = now - self.config.retention
        expired = [end for end, _, last in windows if last <= cutoff]
        if not expired:
            return
        self._published_windows = [w for w in windows if w[2] > cutoff]
        before = max(expired)
        assert isinstance(self.log, TruncatableLog)
        await self.log.truncate(self.config.log, before)
        self.metrics.truncated_below = max(self.metrics.truncated_below, before)

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until ``stop`` is set, then release the lease.

        A lost lease makes this relay a standby again (it keeps polling to take over); a sink
        error is logged and the batch retried after ``poll_interval``.
        """
        try:
            while not stop.is_set():
                try:
                    published = await self.run_once()
                except LeaseLost as exc:
                    log.warning("%s", exc)
                    published = 0
                except Exception:
                    log.exception("relay %s failed to publish from %s", self.relay_id, self.config.log)
                    published = 0
                if published < self.config.batch_size:  # drained (or standby): wait before polling
                    with suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self.config.poll_interval)
        finally:
            with suppress(Exception):
                await self.release()

    # -- lifecycle --------------------------------------------------------------------------

    async def _step(self) -> bool:
        # A batch that ended (or failed: read again next time) is no longer in hand; a
        # cancelled one (CancelledError is no Exception) stays, for the stop to report.
        try:
            published = await self.run_once()
        except LeaseLost as exc:
            self._batch = None
            log.warning("%s", exc)
            return False
        except Exception:
            self._batch = None
            raise
        self._batch = None
        return published >= self.config.batch_size

    async def _finish(self) -> None:
        await self.release()

    async def _probe(self) -> None:
        await self.kv.get(self.config.lease)
        await self.log.end_offset(self.config.log)

    def _in_flight(self) -> list[str]:
        if self._batch is None:
            return []
        first, end = self._batch
        return [f"record {offset} of {self.config.log}" for offset in range(first, end)]


# --- consumer side -------------------------------------------------------------------------


class Deduplicator:
    """Drops redelivered outbox events by event id, remembering the last ``capacity`` ids.

    Memory is bounded: an id is forgotten after ``capacity`` newer ones. A duplicate arriving
    later than that passes through, so size it above the largest redelivery window (a relay
    republishes at most ``batch_size`` records after a crash; add what your sink redelivers).
    For duplicates that must never pass, key an idempotent write on the event id instead.
    """

    def __init__(self, capacity: int = 10_000) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.duplicates = 0
        self._seen: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._seen

    def first_time(self, event: Message | str) -> bool:
        """True (and remembered) the first time an event id is seen; False for a duplicate.
        A message without an event id header is never treated as a duplicate."""
        event_id = event.headers.get(HEADER_EVENT_ID) if isinstance(event, Message) else event
        if event_id is None:
            return True
        if event_id in self._seen:
            self._seen.move_to_end(event_id)
            self.duplicates += 1
            return False
        self._seen[event_id] = None
        if len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
        return True


# --- registration --------------------------------------------------------------------------


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
