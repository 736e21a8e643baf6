"""The relay: publishes committed outbox records in offset order, at least once, under a
lease fenced by an epoch stored with its offset."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import ClassVar, NoReturn

import prism_testkit.simulation.clock as clocks
from prism_testkit.interfaces import KeyValue, Log, Record, TruncatableLog
from prism_testkit.pattern_sdk import metrics as prometheus
from prism_testkit.pattern_sdk.lifecycle import (
    DEFAULT_FORCE_TIMEOUT,
    DEFAULT_GRACEFUL_TIMEOUT,
    BatchProcess,
    run_batches,
)

from .codec import HEADER_CREATED_AT
from .config import Clock, OutboxConfig, _checked_config
from .errors import LeaseLost, OutboxConfigurationError, OutboxError
from .sinks import Sink

log = logging.getLogger(__name__)

# A relay stops a batch when less than this share of its lease is left: the successor's clock
# may run slightly ahead of ours.
_LEASE_SAFETY = 0.2


@dataclass
class RelayMetrics:
    # the rest count up (prism_testkit.pattern_sdk.metrics)
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
        self.metrics = prometheus.tracked("outbox_relay", RelayMetrics())
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

        async def batch() -> bool:
            return await self.run_once() >= self.config.batch_size  # less: drained, wait before polling

        def failed(exc: Exception) -> None:
            if isinstance(exc, LeaseLost):  # standby again: expected, one line
                log.warning("%s", exc)
            else:
                log.error("relay %s failed to publish from %s", self.relay_id, self.config.log, exc_info=exc)

        await run_batches(stop, batch, wait=self.config.poll_interval, on_error=failed, finish=self.release)

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
