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
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import ClassVar

from prism_testkit.interfaces import ChangeFeed, ChangeSet, KeyChange, KeyValue
from prism_testkit.report import metrics as prometheus

from .config import CdcConfig, Operation
from .events import ChangeEvent, Op, encode
from .sinks import EventSink

log = logging.getLogger(__name__)

HEARTBEAT = "heartbeat"
OPERATION_OF: dict[Op, Operation] = {"c": "INSERT", "u": "UPDATE", "d": "DELETE"}


@dataclass
class CdcMetrics:
    GAUGES: ClassVar[frozenset[str]] = frozenset({"position"})  # the rest count up (prism_testkit.report.metrics)

    events_published: int = 0  # sink.publish calls that returned (republished ones included)
    transactions_published: int = 0
    snapshot_rows: int = 0
    heartbeats: int = 0
    confirms: int = 0
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

    @classmethod
    def parse(cls, raw: bytes | None) -> SnapshotState:
        if raw is None:
            return cls()
        data = json.loads(raw)
        return cls(bool(data["done"]), data["after"], int(data["chunk"]))

    def dump(self) -> bytes:
        return json.dumps({"done": self.done, "after": self.after, "chunk": self.chunk}).encode()


@dataclass
class _Window:
    chunk: int
    rows: dict[str, bytes]  # key -> value read inside the window, dropped when the stream changes it
    last_key: str | None
    complete: bool  # the chunk reached the end of the key space
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
    clock: Callable[[], float] = time.time
    metrics: CdcMetrics = field(default_factory=lambda: prometheus.noted("cdc", CdcMetrics()))
    _state: SnapshotState | None = None
    _window: _Window | None = None
    _last_activity: float = 0.0
    _started: bool = False

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the capture (or resume it) and load the snapshot progress."""
        await self.feed.create(self.config.capture, self.config.prefix)
        if self.config.snapshot == "initial":
            self._state = SnapshotState.parse(await self.kv.get(self.config.snapshot_state_key))
        self._last_activity = self.clock()
        self._started = True

    async def drop(self) -> None:
        """Decommission: drop the capture (its slot stops retaining WAL) and the progress."""
        await self.feed.drop(self.config.capture)
        await self.kv.delete(self.config.snapshot_state_key)

    @property
    def snapshot_done(self) -> bool:
        return self._state is None or self._state.done

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until ``stop`` is set; a failed batch is retried (never confirmed)."""
        if not self._started:
            await self.start()
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception:
                log.exception("CDC connector %s failed a batch; retrying", self.config.capture)
                with suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.config.poll_interval)

    async def run_once(self) -> int:
        """One batch: open a snapshot window when due, read, publish, confirm. Returns the
        number of events published."""
        if not self._started:
            await self.start()
        if self._window is None and self._state is not None and not self._state.done:
            await self._open_window(self._state)
        sets = await self.feed.read(self.config.capture, limit=self.config.batch_size, wait=self.config.poll_interval)
        if not sets:
            await self._heartbeat_when_idle()
            return 0
        published = 0
        for change_set in sets:
            published += await self._publish_set(change_set)
        await self.feed.confirm(self.config.capture, sets[-1].position)
        self.metrics.confirms += 1
        self.metrics.position = sets[-1].position
        self._last_activity = self.clock()
        return published

    async def drain(self) -> int:
        """Run batches until the snapshot is done and a read finds nothing new."""
        total = 0
        while True:
            published = await self.run_once()
            total += published
            idle = published == 0 and self.snapshot_done and self._window is None
            if idle and not await self.feed.read(self.config.capture, limit=1):
                return total

    # --- streaming -------------------------------------------------------------------------

    async def _publish_set(self, change_set: ChangeSet) -> int:
        window = self._window
        if window is not None and window.low in change_set.marks:
            window.opened = True
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
            return len(events) + await self._close_window(window, change_set)
        return len(events)

    def _events(self, change_set: ChangeSet) -> list[ChangeEvent]:
        wanted = [(c, _op(c)) for c in change_set.changes]
        wanted = [(c, op) for c, op in wanted if OPERATION_OF[op] in self.config.operations and self._wanted(c.key)]
        now_ms = int(self.clock() * 1000)
        return [
            ChangeEvent(
                event_id=f"{self.config.capture}:{change_set.position}:{index}",
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
            )
            for index, (change, op) in enumerate(wanted, start=1)
        ]

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
        await self.sink.publish(self.topic(event.table), encode(event, self.config.capture))
        self.metrics.events_published += 1

    async def _heartbeat_when_idle(self) -> None:
        if self.clock() - self._last_activity >= self.config.heartbeat_interval:
            # Confirming the heartbeat's own transaction moves the position past WAL written
            # for other keys meanwhile, which an idle capture would otherwise retain.
            await self.feed.mark(self.config.capture, HEARTBEAT)
            self.metrics.heartbeats += 1
            self._last_activity = self.clock()

    # --- snapshot (DBLog watermarks) -------------------------------------------------------

    async def _open_window(self, state: SnapshotState) -> None:
        chunk = state.chunk + 1
        await self.feed.mark(self.config.capture, f"low:{chunk}")
        keys = await self._chunk_keys(state.after)
        rows: dict[str, bytes] = {}
        for key in keys:
            value = await self.kv.get(key)
            if value is not None:  # deleted since the scan: the stream carries the delete
                rows[key] = value
        await self.feed.mark(self.config.capture, f"high:{chunk}")
        complete = len(keys) < self.config.snapshot_chunk_size
        self._window = _Window(chunk, rows, keys[-1] if keys else state.after, complete)

    async def _chunk_keys(self, after: str | None) -> list[str]:
        # KeyValue.scan has no "start after" and need not be ordered: sort, then cut.
        keys = sorted([k async for k in self.kv.scan(self.config.prefix)])
        if after is not None:
            keys = [k for k in keys if k > after]
        return keys[: self.config.snapshot_chunk_size]

    async def _close_window(self, window: _Window, high: ChangeSet) -> int:
        rows = [(key, value) for key, value in sorted(window.rows.items()) if self._wanted(key)]
        now_ms = int(self.clock() * 1000)
        for index, (key, value) in enumerate(rows, start=1):
            await self._send(
                ChangeEvent(
                    event_id=f"{self.config.capture}:{high.position}:{index}",
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
                )
            )
            self.metrics.snapshot_rows += 1
        state = SnapshotState(window.complete, window.last_key, window.chunk)
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
