"""The configuration shared by an outbox's producers and relays, and who publishes its records."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from prism_testkit.config.units import Duration, Size

from .errors import OutboxConfigurationError

# The time source producers and relays read (wall time unless a test injects one).
Clock = Callable[[], float]


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


def _checked_config(config: object) -> OutboxConfig:
    if not isinstance(config, OutboxConfig):
        raise OutboxConfigurationError(f"config must be an OutboxConfig, not {type(config).__name__}")
    return config
