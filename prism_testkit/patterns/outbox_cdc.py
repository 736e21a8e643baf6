"""The outbox's ``publisher: {mode: cdc}``: the store's change feed publishes the outbox, not a
polling relay (RFC-014 pattern 4, CDC + outbox; Debezium's outbox event router).

Why rows and not the outbox log: a change feed reports committed *key-value* changes under a
prefix (PostgreSQL logical decoding of ``prism.kv``, SQLite's trigger-fed change table,
memstore's feed). In cdc mode the producer writes each event as a row under the record prefix,
in the business transaction, exactly as Debezium's outbox is a table whose inserts are
captured. The feed's contract then gives everything the relay had to build with offsets,
leases and fencing: only committed transactions, whole, in commit order, re-read until
confirmed. Teaching every feed to carry log appends would have widened the
:class:`~prism_testkit.interfaces.ChangeFeed` interface on three backends for no guarantee
the row does not already give.

Usage::

    config = OutboxConfig(log="orders-outbox", publisher=OutboxPublisher(mode="cdc"))
    publisher = OutboxCdcPublisher(store.changefeed(), QueueSink(queue, "orders.{event_type}"), config)
    await publisher.start()                # creates the capture: before the first producer commits
    await publisher.run(stop)              # or run_once() / drain()

Guarantees:

* **At-least-once, nothing lost**: a batch of transactions is read, every record published, and
  only then the feed's position confirmed. A publisher killed in between re-reads the batch on
  restart and republishes it with the same ``outbox-event-id`` headers (:class:`Deduplicator`).
  When the sink fails mid-batch, the transactions fully published before it are confirmed, so
  fewer are republished.
* **Nothing of a rolled-back transaction**: the feed reports committed transactions only.
* **Per-aggregate order**: transactions in commit order, records of one transaction in the order
  they were staged (their index in the row, since PostgreSQL writes a transaction's keys sorted).
* **Start before producers**: a capture sees commits made after it was created. ``start`` on a
  capture it has to create refuses (:class:`RecordsBeforeCapture`, capture dropped again) when
  outbox rows already exist, rather than silently never publishing them.

Run one publisher per capture (Debezium runs one task per connector): a second one reading the
same capture only adds duplicates. Records are kept (``cleanup: mark-published``); the
capture's confirmed position is the published mark. :meth:`drop` removes the capture (a
PostgreSQL slot retains WAL until it is dropped).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import prism_testkit.simulation.clock as clocks
from prism_testkit.interfaces import ChangeFeed, ChangeSet, KeyValue, Message
from prism_testkit.pattern_sdk import metrics as prometheus
from prism_testkit.pattern_sdk.lifecycle import logged, run_batches

from .outbox import OutboxConfig, OutboxConfigurationError, OutboxError, Sink, decode_record
from .outbox.config import _checked_config

__all__ = ["HEARTBEAT", "OutboxCdcPublisher", "PublisherMetrics", "RecordsBeforeCapture"]

log = logging.getLogger(__name__)

HEARTBEAT = "outbox-heartbeat"


class RecordsBeforeCapture(OutboxError):
    """Outbox rows existed before the capture did: the feed would never report them."""

    def __init__(self, capture: str, key: str) -> None:
        self.capture = capture
        super().__init__(
            f"capture {capture!r} is new but outbox rows already exist (e.g. {key!r}): records committed before a "
            "capture exists are never in its feed; start the publisher before producers commit (or publish those "
            "rows with the relay first)"
        )


@dataclass
class PublisherMetrics:
    GAUGES: ClassVar[frozenset[str]] = frozenset({"position"})  # the rest count up (prism_testkit.pattern_sdk.metrics)

    events_published: int = 0  # sink.publish calls that returned (republished duplicates included)
    transactions_published: int = 0
    publish_failures: int = 0
    confirms: int = 0
    heartbeats: int = 0
    position: int = 0  # last confirmed change-feed position


class OutboxCdcPublisher:
    """Publishes the outbox rows the change feed captures; see the module docstring.

    ``kv`` (the store's key-value) is only used by :meth:`start` to refuse rows that predate a
    new capture; without it that check is skipped.
    """

    def __init__(
        self,
        feed: ChangeFeed,
        sink: Sink,
        config: OutboxConfig,
        *,
        kv: KeyValue | None = None,
        clock: Callable[[], float] = clocks.wall,
    ) -> None:
        self.config = _checked_config(config)
        if not config.cdc:
            raise OutboxConfigurationError(
                "this outbox's publisher mode is 'relay': its records go to the outbox log, which the change "
                "feed publisher does not read (set publisher: {mode: cdc}, or run OutboxRelay)"
            )
        if not isinstance(sink, Sink):
            raise OutboxConfigurationError(f"sink {type(sink).__name__} has no async publish(message)")
        self.feed = feed
        self.sink = sink
        self.kv = kv
        self.clock = clock
        self.metrics = prometheus.tracked("outbox_cdc", PublisherMetrics())
        self._started = False
        self._last_activity = 0.0

    @property
    def capture(self) -> str:
        return self.config.capture

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the capture, or resume it from its confirmed position."""
        capture, prefix = self.capture, self.config.record_prefix
        new = capture not in await self.feed.captures(capture)
        await self.feed.create(capture, prefix)
        if new and self.kv is not None:
            # Checked after the create, so a row found may also be a commit the capture sees:
            # a false alarm at worst, never a silent loss.
            async for key in self.kv.scan(prefix):
                await self.feed.drop(capture)
                raise RecordsBeforeCapture(capture, key)
        self._last_activity = self.clock()
        self._started = True

    async def drop(self) -> None:
        """Decommission the capture (a PostgreSQL slot stops retaining WAL)."""
        await self.feed.drop(self.capture)
        self._started = False

    # -- publishing -------------------------------------------------------------------------

    def records(self, change_set: ChangeSet) -> list[Message]:
        """The outbox events of one committed transaction, in the order they were staged.
        Updates and deletes of rows (cleanup, manual repair) are not events."""
        inserted = [
            decode_record(change.key, change.after)
            for change in change_set.changes
            if change.before is None and change.after is not None and change.key.startswith(self.config.record_prefix)
        ]
        return [message for _, message in sorted(inserted, key=lambda item: item[0])]

    async def run_once(self) -> int:
        """Read a batch of committed transactions, publish their events, then confirm the
        feed's position. Returns the number of events published."""
        if not self._started:
            await self.start()
        sets = await self.feed.read(self.capture, limit=self.config.batch_size, wait=self.config.poll_interval)
        if not sets:
            await self._heartbeat_when_idle()
            return 0
        published = 0
        done: ChangeSet | None = None  # the last transaction whose events the sink all acknowledged
        try:
            for change_set in sets:
                events = self.records(change_set)
                for message in events:
                    try:
                        await self.sink.publish(message)
                    except Exception:
                        self.metrics.publish_failures += 1
                        raise
                    self.metrics.events_published += 1
                    published += 1
                if events:
                    self.metrics.transactions_published += 1
                done = change_set
        finally:
            # Also on a sink error: what the sink acknowledged need not be republished.
            if done is not None:
                await self._confirm(done.position)
        return published

    async def _confirm(self, position: int) -> None:
        await self.feed.confirm(self.capture, position)
        self.metrics.confirms += 1
        self.metrics.position = position
        self._last_activity = self.clock()

    async def _heartbeat_when_idle(self) -> None:
        if self.clock() - self._last_activity >= self.config.publisher.heartbeat_interval:
            # Its transaction, once confirmed, moves a PostgreSQL slot past WAL written for
            # other tables meanwhile, which an idle capture would otherwise retain.
            await self.feed.mark(self.capture, HEARTBEAT)
            self.metrics.heartbeats += 1
            self._last_activity = self.clock()

    async def drain(self) -> int:
        """Publish until a read finds nothing new; returns the events published."""
        total = 0
        while True:
            published = await self.run_once()
            total += published
            if published == 0 and not await self.feed.read(self.capture, limit=1):
                return total

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until ``stop`` is set; a failed batch is retried from the confirmed position."""

        async def batch() -> bool:
            await self.run_once()  # a read of the feed waits for changes itself
            return True

        failed = logged(log, "outbox publisher %s failed a batch; retrying", self.capture)
        await run_batches(stop, batch, wait=self.config.poll_interval, on_error=failed)
