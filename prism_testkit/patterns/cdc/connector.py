"""The CDC connector: reads whole committed transactions from a change feed, publishes them as
change events, and confirms the feed's position only after the sink acknowledged every event
up to it. A crash at any point therefore republishes (at-least-once, same event ids) and never
loses a change; transactions are published whole and in commit order.

The initial snapshot follows Netflix DBLog: existing rows are read in key-ordered chunks while
the stream keeps flowing, each chunk inside a watermark window. The connector commits a low
mark, reads the chunk, commits a high mark; while streaming, a change inside the window drops
its key from the chunk (the stream carries the newer value), and at the high mark the rest of
the chunk is published as ``r`` events. Every key read in the window and not changed in it
had the same value from the low to the high mark, so its ``r`` event is exact at the high
mark's position: no gap, no stale row after a newer change, and no table lock. Progress (the
last key chunked) is stored in the source's key-value under ``state_key``, outside the
captured prefix.

A capture whose position the source lost (:class:`~prism_testkit.errors.CaptureLost`: a
failover to a PostgreSQL standby, which has no logical slots) is never silently made again
from now, which would skip every change in between. By default the error ends the batch for
an operator to see; with ``on_capture_lost="resnapshot"`` the connector starts a new capture
in a new epoch and runs the same watermark snapshot over it, opened by a truncate that voids
what consumers hold from earlier epochs, so the replica converges on the source (changes made
in the gap arrive only as the rows they left).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import prism_testkit.simulation.clock as clocks
from prism_testkit.errors import CaptureLost
from prism_testkit.interfaces import ChangeFeed, ChangeSet, KeyChange, KeyValue
from prism_testkit.pattern_sdk import metrics as prometheus
from prism_testkit.pattern_sdk.lifecycle import (
    DEFAULT_FORCE_TIMEOUT,
    DEFAULT_GRACEFUL_TIMEOUT,
    BatchProcess,
    logged,
    run_batches,
)

from .config import CdcConfig, Operation
from .events import ChangeEvent, Op, encode
from .sinks import EventSink

log = logging.getLogger(__name__)

HEARTBEAT = "heartbeat"
OPERATION_OF: dict[Op, Operation] = {"c": "INSERT", "u": "UPDATE", "d": "DELETE"}


@dataclass
class CdcMetrics:
    GAUGES: ClassVar[frozenset[str]] = frozenset({"position"})  # the rest count up (prism_testkit.pattern_sdk.metrics)

    events_published: int = 0  # sink.publish calls that returned (republished ones included)
    transactions_published: int = 0
    snapshot_rows: int = 0
    heartbeats: int = 0
    confirms: int = 0
    captures_lost: int = 0  # CaptureLost seen (raised, or recovered by a snapshot)
    replication_lag_seconds: float = 0.0  # publish time minus commit time of the last transaction handled
    position: int = 0  # last confirmed position

    def samples(self) -> dict[str, float]:
        """The metrics under their exported names (``prism_cdc_events_published_total`` ...)."""
        return prometheus.samples("cdc", self)

    def exposition(self, namespace: str) -> str:
        """Prometheus text format, labelled with ``namespace``: what the collector exports."""
        return prometheus.exposition("cdc", namespace, self)


@dataclass
class SnapshotState:
    done: bool = False
    after: str | None = None  # last key of the last chunk published
    chunk: int = 0
    epoch: int = 0  # captures started afresh after a lost one
    truncate: bool = False  # this epoch's truncate is still to be published (with its first chunk)

    @classmethod
    def parse(cls, raw: bytes | None) -> SnapshotState:
        if raw is None:
            return cls()
        data = json.loads(raw)
        epoch, truncate = int(data.get("epoch", 0)), bool(data.get("truncate", False))
        return cls(bool(data["done"]), data["after"], int(data["chunk"]), epoch, truncate)

    def dump(self) -> bytes:
        fields = {"done": self.done, "after": self.after, "chunk": self.chunk}
        return json.dumps({**fields, "epoch": self.epoch, "truncate": self.truncate}).encode()


@dataclass
class _Window:
    chunk: int
    rows: dict[str, bytes]  # key -> value read inside the window, dropped when the stream changes it
    last_key: str | None
    complete: bool  # the chunk reached the end of the key space
    truncate: bool = False  # publish the epoch's truncate at the low mark
    opened: bool = False  # the low mark has been seen in the stream

    @property
    def low(self) -> str:
        return f"low:{self.chunk}"

    @property
    def high(self) -> str:
        return f"high:{self.chunk}"


@dataclass
class CdcConnector:
    feed: ChangeFeed
    kv: KeyValue  # the source's key-value: snapshot reads and the snapshot progress
    sink: EventSink
    config: CdcConfig
    clock: Callable[[], float] = clocks.wall
    metrics: CdcMetrics = field(default_factory=lambda: prometheus.tracked("cdc", CdcMetrics()))
    _state: SnapshotState | None = None  # None: no snapshot configured and no epoch started yet
    _window: _Window | None = None
    _tables: set[str] = field(default_factory=set)  # tables published to by this process
    _last_activity: float = 0.0
    _started: bool = False
    _in_hand: list[int] = field(default_factory=list)  # positions read and not yet confirmed

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the capture (or resume it) and load the snapshot progress."""
        stored = await self.kv.get(self.config.snapshot_state_key)
        if self.config.snapshot == "initial" or stored is not None:  # stored: a later epoch, or its snapshot
            self._state = SnapshotState.parse(stored)
        self._last_activity = self.clock()
        self._started = True
        if self.epoch:  # a crash inside _capture_lost may have left the lost one behind
            await self.feed.drop(self._capture_of(self.epoch - 1))
        try:
            await self.feed.create(self.capture, self.config.prefix)
        except CaptureLost as lost:
            await self._capture_lost(lost)

    async def drop(self) -> None:
        """Decommission: drop the capture (its slot stops retaining WAL) and the progress."""
        await self.feed.drop(self.capture)
        await self.kv.delete(self.config.snapshot_state_key)

    @property
    def snapshot_done(self) -> bool:
        return self._state is None or self._state.done

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until ``stop`` is set; a failed batch is retried (never confirmed)."""
        if not self._started:
            await self.start()

        async def batch() -> bool:
            await self.run_once()  # a read of the feed waits for changes itself
            return True

        failed = logged(log, "CDC connector %s failed a batch; retrying", self.config.capture)
        await run_batches(stop, batch, wait=self.config.poll_interval, on_error=failed)

    async def run_once(self) -> int:
        """One batch: open a snapshot window when due, read, publish, confirm. Returns the
        number of events published."""
        if not self._started:
            await self.start()
        try:
            return await self._batch()
        except CaptureLost as lost:
            await self._capture_lost(lost)
            return 0

    async def _batch(self) -> int:
        if self._window is None and self._state is not None and not self._state.done:
            await self._open_window(self._state)
        sets = await self.feed.read(self.capture, limit=self.config.batch_size, wait=self.config.poll_interval)
        if not sets:
            await self._heartbeat_when_idle()
            return 0
        self._in_hand = [change_set.position for change_set in sets]
        published = 0
        for change_set in sets:
            published += await self._publish_set(change_set)
        await self.feed.confirm(self.capture, sets[-1].position)
        self._in_hand = []
        self.metrics.confirms += 1
        self.metrics.position = sets[-1].position
        self._last_activity = self.clock()
        return published

    def process(
        self,
        *,
        graceful_timeout: float = DEFAULT_GRACEFUL_TIMEOUT,
        force_timeout: float = DEFAULT_FORCE_TIMEOUT,
        health_timeout: float = 5.0,
    ) -> CdcProcess:
        """This connector as a lifecycle process (start, health, stop within a bound)."""
        return CdcProcess(
            self, graceful_timeout=graceful_timeout, force_timeout=force_timeout, health_timeout=health_timeout
        )

    async def drain(self) -> int:
        """Run batches until the snapshot is done and a read finds nothing new."""
        total = 0
        while True:
            published = await self.run_once()
            total += published
            idle = published == 0 and self.snapshot_done and self._window is None
            if idle and not await self._pending():
                return total

    async def _pending(self) -> bool:
        try:
            return bool(await self.feed.read(self.capture, limit=1))
        except CaptureLost as lost:
            await self._capture_lost(lost)
            return True

    async def _capture_lost(self, lost: CaptureLost) -> None:
        """Raise ``lost``, or start a new epoch: a new capture and a snapshot over it."""
        self.metrics.captures_lost += 1
        if self.config.on_capture_lost == "raise":
            raise lost
        stored = await self.kv.get(self.config.snapshot_state_key)
        if stored is not None and SnapshotState.parse(stored).epoch > self.epoch:
            # Another connector already moved on: this one was a straggler of a lost epoch.
            self._state, self._window = SnapshotState.parse(stored), None
            return
        log.warning("CDC connector %s: %s; re-snapshotting in a new epoch", self.config.capture, lost)
        old, lost_capture = self._state or SnapshotState(done=True), self.capture
        state = SnapshotState(chunk=old.chunk, epoch=old.epoch + 1, truncate=True)
        # Stored first: a crash from here on resumes in the new epoch, never in the lost one.
        await self.kv.put(self.config.snapshot_state_key, state.dump())
        self._state, self._window = state, None
        await self.feed.drop(lost_capture)
        await self.feed.create(self.capture, self.config.prefix)
        self._last_activity = self.clock()

    # --- streaming -------------------------------------------------------------------------

    async def _publish_set(self, change_set: ChangeSet) -> int:
        window = self._window
        truncated = 0
        if window is not None and window.low in change_set.marks:
            window.opened = True
            if window.truncate:
                truncated = await self._truncate(change_set)
        if window is not None and window.opened:
            for change in change_set.changes:
                window.rows.pop(change.key, None)
        events = self._events(change_set)
        for event in events:
            await self._send(event)
        if events:
            self.metrics.transactions_published += 1
        self.metrics.replication_lag_seconds = max(0.0, self.clock() - change_set.commit_ts_ms / 1000)
        if window is not None and window.high in change_set.marks:
            return truncated + len(events) + await self._close_window(window, change_set)
        return truncated + len(events)

    def _events(self, change_set: ChangeSet) -> list[ChangeEvent]:
        wanted = [(c, _op(c)) for c in change_set.changes]
        wanted = [(c, op) for c, op in wanted if OPERATION_OF[op] in self.config.operations and self._wanted(c.key)]
        now_ms = int(self.clock() * 1000)
        return [
            ChangeEvent(
                event_id=self._event_id(change_set.position, index),
                op=op,
                table=self.table(change.key),
                key=change.key,
                before=change.before if self.config.include_old_value else None,
                after=change.after,
                position=change_set.position,
                txid=change_set.txid,
                total_order=index,
                total=len(wanted),
                commit_ts_ms=change_set.commit_ts_ms,
                ts_ms=now_ms,
                epoch=self.epoch,
            )
            for index, (change, op) in enumerate(wanted, start=1)
        ]

    @property
    def epoch(self) -> int:
        return 0 if self._state is None else self._state.epoch

    @property
    def capture(self) -> str:
        """The change feed's capture of this epoch. Each epoch has its own, so a straggler of a
        lost epoch finds its capture gone instead of consuming the new one's changes."""
        return self._capture_of(self.epoch)

    def _capture_of(self, epoch: int) -> str:
        # Epoch 0 keeps the name (and event ids) of connectors that had no epochs.
        return f"{self.config.capture}@{epoch}" if epoch else self.config.capture

    def _event_id(self, position: int, index: int | str) -> str:
        return f"{self.capture}:{position}:{index}"

    def table(self, key: str) -> str:
        rest = key[len(self.config.prefix) :]
        return rest.split(self.config.table_separator, 1)[0] if self.config.table_separator in rest else "default"

    def topic(self, table: str) -> str:
        return f"{self.config.topic_prefix}.{table}"

    def _wanted(self, key: str) -> bool:
        if key == self.config.snapshot_state_key:
            return False  # the connector's own progress, when it lies in the captured key space
        return not self.config.tables or self.table(key) in self.config.tables

    async def _send(self, event: ChangeEvent) -> None:
        self._tables.add(event.table)
        await self.sink.publish(self.topic(event.table), encode(event, self.config.capture))
        self.metrics.events_published += 1

    async def _truncate(self, low: ChangeSet) -> int:
        """Open a new epoch on every table's topic a consumer may read: the configured tables,
        or those of rows that exist now and those this process published to. (A table emptied
        in the gap and unknown to this process gets none, but one truncate voids the earlier
        epochs of the whole replica that receives it.)"""
        tables = set(self.config.tables)
        if not tables:
            tables = self._tables | {self.table(k) for k in await self._chunk_keys(None, None) if self._wanted(k)}
        now_ms = int(self.clock() * 1000)
        for table in sorted(tables):
            await self._send(
                ChangeEvent(
                    event_id=self._event_id(low.position, f"t-{table}"),
                    op="t",
                    table=table,
                    key="",
                    before=None,
                    after=None,
                    position=low.position,
                    txid=f"truncate-{self.epoch}",
                    total_order=0,
                    total=0,
                    commit_ts_ms=low.commit_ts_ms,
                    ts_ms=now_ms,
                    snapshot=True,
                    epoch=self.epoch,
                )
            )
        return len(tables)

    async def _heartbeat_when_idle(self) -> None:
        if self.clock() - self._last_activity >= self.config.heartbeat_interval:
            # Confirming the heartbeat's own transaction moves the position past WAL written
            # for other keys meanwhile, which an idle capture would otherwise retain.
            await self.feed.mark(self.capture, HEARTBEAT)
            self.metrics.heartbeats += 1
            self._last_activity = self.clock()

    # --- snapshot (DBLog watermarks) -------------------------------------------------------

    async def _open_window(self, state: SnapshotState) -> None:
        chunk = state.chunk + 1
        await self.feed.mark(self.capture, f"low:{chunk}")
        keys = await self._chunk_keys(state.after, self.config.snapshot_chunk_size)
        rows: dict[str, bytes] = {}
        for key in keys:
            value = await self.kv.get(key)
            if value is not None:  # deleted since the scan: the stream carries the delete
                rows[key] = value
        await self.feed.mark(self.capture, f"high:{chunk}")
        complete = len(keys) < self.config.snapshot_chunk_size
        self._window = _Window(chunk, rows, keys[-1] if keys else state.after, complete, state.truncate)

    async def _chunk_keys(self, after: str | None, size: int | None) -> list[str]:
        # KeyValue.scan has no "start after" and need not be ordered: sort, then cut.
        keys = sorted([k async for k in self.kv.scan(self.config.prefix)])
        if after is not None:
            keys = [k for k in keys if k > after]
        return keys if size is None else keys[:size]

    async def _close_window(self, window: _Window, high: ChangeSet) -> int:
        rows = [(key, value) for key, value in sorted(window.rows.items()) if self._wanted(key)]
        now_ms = int(self.clock() * 1000)
        for index, (key, value) in enumerate(rows, start=1):
            await self._send(
                ChangeEvent(
                    event_id=self._event_id(high.position, index),
                    op="r",
                    table=self.table(key),
                    key=key,
                    before=None,
                    after=value,
                    position=high.position,
                    txid=f"snapshot-{window.chunk}",
                    total_order=index,
                    total=len(rows),
                    commit_ts_ms=high.commit_ts_ms,
                    ts_ms=now_ms,
                    snapshot=True,
                    epoch=self.epoch,
                )
            )
            self.metrics.snapshot_rows += 1
        state = SnapshotState(window.complete, window.last_key, window.chunk, self.epoch)
        await self.kv.put(self.config.snapshot_state_key, state.dump())  # before the confirm
        self._state = state
        self._window = None
        return len(rows)


def _op(change: KeyChange) -> Op:
    if change.before is None:
        return "c"
    if change.after is None:
        return "d"
    return "u"


class CdcProcess(BatchProcess):
    """A :class:`CdcConnector` under the pattern lifecycle: :meth:`start` creates (or resumes)
    the capture and publishes in the background, :meth:`health` probes the source,
    :meth:`stop` (``within=``) lets the batch in hand be published and confirmed.

    A separate object because the connector's own ``start()`` (create the capture, then drive
    it with ``run_once`` / ``drain``) predates the lifecycle and stays as it was. A forced stop
    cancels the batch before its confirm: the report names the change sets left
    (``change set at position P of CAPTURE``), which the next connector over the same capture
    publishes again with the same event ids (at least once), never skips.
    """

    pattern_name = "cdc-connector"

    def __init__(
        self,
        connector: CdcConnector,
        *,
        graceful_timeout: float = DEFAULT_GRACEFUL_TIMEOUT,
        force_timeout: float = DEFAULT_FORCE_TIMEOUT,
        health_timeout: float = 5.0,
    ) -> None:
        super().__init__(
            graceful_timeout=graceful_timeout,
            force_timeout=force_timeout,
            health_timeout=health_timeout,
            idle_wait=connector.config.poll_interval,
        )
        self.connector = connector

    async def _prepare(self) -> None:
        if not self.connector._started:
            await self.connector.start()

    async def _step(self) -> bool:
        try:
            return await self.connector.run_once() > 0
        except Exception:
            self.connector._in_hand = []  # not confirmed: read again by the next batch
            raise

    async def _probe(self) -> None:
        await self.connector.kv.get(self.connector.config.snapshot_state_key)

    def _in_flight(self) -> list[str]:
        capture = self.connector.capture
        return [f"change set at position {p} of {capture}" for p in self.connector._in_hand]
