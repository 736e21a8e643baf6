"""The event store: one stream per aggregate, optimistic appends, a global notification log.

Layout over one backend with transactions, key-value and a log (all names start with the
config's ``name``):

* ``<name>/head/<stream>``: the stream's version and the time of its last event;
* ``<name>/event/<stream>/<position>``: each event, written once, never changed;
* ``<name>-notifications``: every event again, in the log, in commit order.

An append is one transaction: it reads the head, refuses a version other than the expected one
(:class:`VersionConflict`), and writes the events, the new head and the notifications together.
Two concurrent appends to one stream both read the same head; the transaction's optimistic
concurrency lets only one commit, and the loser gets :class:`VersionConflict` with nothing
written. Positions are therefore unique and gap-free.

The notification order is the log's offsets, which the backend assigns *at commit, in commit
order* (the same property the outbox relies on): an append that began early but committed late
gets a later offset, so a follower reading by offset never skips it.

There is deliberately no update or delete: events are immutable, and the full history of every
stream stays readable. Time travel is :meth:`EventStore.read_stream` up to a version or a time
(``recorded_at`` never decreases within a stream, so "up to a time" is a prefix).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import prism_testkit.simulation.clock as clocks
from prism_testkit.errors import TransactionAborted
from prism_testkit.interfaces import KeyValue, Log, Message, Transaction, Transactions

from .config import EventSourcingConfig
from .errors import CorruptStream, EventSourcingConfigurationError, InvalidEvent, VersionConflict
from .events import NewEvent, RecordedEvent, checked_data, checked_time
from .upcasting import Upcasters

Clock = Callable[[], float]
# Given the events an append is about to commit, the stream's new snapshot (or None), written
# in the same transaction (see aggregates.Repository).
SnapshotOf = Callable[[Sequence[RecordedEvent]], bytes | None]

# An event to write: as given, its schema version, its checked data.
Staged = tuple[NewEvent, int, dict[str, object]]

HEADER_STREAM = "es-stream"
HEADER_POSITION = "es-position"
HEADER_EVENT_ID = "es-event-id"
HEADER_TYPE = "es-type"
MAX_STREAM_NAME = 200
_READ_CONCURRENCY = 32


@dataclass(frozen=True, slots=True)
class Head:
    version: int = 0
    recorded_at: float = float("-inf")

    def encode(self) -> bytes:
        return json.dumps({"version": self.version, "at": self.recorded_at}).encode()

    @classmethod
    def decode(cls, raw: bytes | None) -> Head:
        if raw is None:
            return cls()
        try:
            body = json.loads(raw)
            return cls(int(body["version"]), float(body["at"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptStream(f"a stream head cannot be decoded: {exc!r}") from None


@dataclass(frozen=True, slots=True)
class AppendResult:
    stream: str
    version: int  # the stream's version after the append
    events: tuple[RecordedEvent, ...]


@dataclass(frozen=True, slots=True)
class Notification:
    """An event at its place in the application-wide order (``offset`` 0, 1, 2...)."""

    offset: int
    event: RecordedEvent


def check_stream(stream: object) -> str:
    if not isinstance(stream, str) or not stream or len(stream) > MAX_STREAM_NAME:
        raise InvalidEvent(f"a stream name must be a string of 1 to {MAX_STREAM_NAME} characters, got {stream!r}")
    if any(ord(c) < 32 for c in stream):
        raise InvalidEvent(f"stream name {stream!r} contains control characters")
    return stream


def check_version(expected_version: object) -> int:
    if isinstance(expected_version, bool) or not isinstance(expected_version, int) or expected_version < 0:
        raise InvalidEvent(f"expected_version must be an int >= 0 (0: a new stream), got {expected_version!r}")
    return expected_version


class EventStore:
    """Append-only event streams over ``transactions`` + ``log`` + ``kv`` of one backend.

    ``clock`` stamps events (inject a fake one for time-travel tests); ``upcasters`` bring old
    event schemas to the current one on every read.
    """

    def __init__(
        self,
        transactions: Transactions,
        log: Log,
        kv: KeyValue,
        config: EventSourcingConfig | None = None,
        *,
        clock: Clock = clocks.wall,
        upcasters: Upcasters | None = None,
    ) -> None:
        config = EventSourcingConfig() if config is None else config
        if not isinstance(config, EventSourcingConfig):
            raise EventSourcingConfigurationError(f"config must be an EventSourcingConfig, not {type(config).__name__}")
        self.transactions = transactions
        self.log = log
        self.kv = kv
        self.config = config
        self.clock = clock
        self.upcasters = upcasters if upcasters is not None else Upcasters()

    # -- writing ----------------------------------------------------------------------------

    async def append(self, stream: str, events: Sequence[NewEvent], expected_version: int) -> AppendResult:
        """Append ``events`` to ``stream`` if it is at ``expected_version`` (0: new stream).

        Raises :class:`VersionConflict` (nothing written) when it is not, also when a
        concurrent append won the race; :class:`InvalidEvent` for input that cannot be stored.

        Idempotent retries: when every event carries a caller-chosen ``event_id`` and the stream
        already holds exactly those events right after ``expected_version`` (an earlier attempt
        whose outcome was unknown did commit), the append returns that result and writes
        nothing, instead of a conflict.
        """
        return await self.append_with_snapshot(stream, events, expected_version, None)

    async def append_with_snapshot(
        self, stream: str, events: Sequence[NewEvent], expected_version: int, snapshot_of: SnapshotOf | None
    ) -> AppendResult:
        """:meth:`append`, plus the snapshot ``snapshot_of`` makes of the appended events,
        committed in the same transaction (so it always matches the events it covers)."""
        check_stream(stream)
        expected = check_version(expected_version)
        staged = self._staged(events)
        try:
            recorded = await self._commit(stream, expected, staged, snapshot_of)
        except VersionConflict:
            earlier = await self._already_appended(stream, expected, staged)
            if earlier is None:
                raise
            return earlier
        return AppendResult(stream, expected + len(recorded), tuple(recorded))

    async def _commit(
        self, stream: str, expected: int, staged: list[Staged], snapshot_of: SnapshotOf | None
    ) -> list[RecordedEvent]:
        try:
            async with self.transactions.transaction() as tx:
                recorded = await self._write(tx, stream, expected, staged)
                snapshot = None if snapshot_of is None else snapshot_of(recorded)
                if snapshot is not None:
                    await tx.put(self.config.snapshot_key(stream), snapshot)
        except TransactionAborted:
            # Usually a concurrent append to the same stream committed first.
            actual = await self.version(stream)
            if actual != expected:
                raise VersionConflict(stream, expected, actual) from None
            raise
        return recorded

    async def _already_appended(self, stream: str, expected: int, staged: list[Staged]) -> AppendResult | None:
        """The result of an earlier attempt of this very append, if it committed."""
        ids = [event.event_id for event, _, _ in staged]
        if any(event_id is None for event_id in ids):
            return None
        found = await self.read_stream(stream, after=expected, until_version=expected + len(ids))
        if [event.event_id for event in found] != ids:
            return None
        return AppendResult(stream, expected + len(ids), tuple(found))

    def _staged(self, events: Sequence[NewEvent]) -> list[Staged]:
        if isinstance(events, NewEvent) or not isinstance(events, Sequence) or not events:
            raise InvalidEvent("append takes a non-empty sequence of NewEvent")
        staged = []
        for event in events:
            data = dict(checked_data(event, self.config.max_event_size))
            current = self.upcasters.current(event.type)
            schema = current if event.schema is None else event.schema
            if isinstance(schema, bool) or not isinstance(schema, int) or not 1 <= schema <= current:
                raise InvalidEvent(f"event {event.type!r}: schema must be 1..{current}, got {event.schema!r}")
            staged.append((event, schema, data))
        ids = [event.event_id for event in events if event.event_id is not None]
        if len(set(ids)) != len(ids):
            raise InvalidEvent("event ids must be unique within an append")
        return staged

    async def _write(self, tx: Transaction, stream: str, expected: int, staged: list[Staged]) -> list[RecordedEvent]:
        head_key = self.config.head_key(stream)
        head = Head.decode(await tx.get(head_key))  # the read that makes concurrent appends conflict
        if head.version != expected:
            raise VersionConflict(stream, expected, head.version)
        # Never before the stream's last event: "events up to time t" stays a prefix.
        now = max(checked_time(self.clock()), head.recorded_at)
        recorded = [
            RecordedEvent(
                event.event_id or str(clocks.fresh_uuid()), stream, expected + i, event.type, schema, data, now
            )
            for i, (event, schema, data) in enumerate(staged, start=1)
        ]
        for event in recorded:
            raw = event.encode()
            await tx.put(self.config.event_key(stream, event.position), raw)
            headers = {
                HEADER_STREAM: stream,
                HEADER_POSITION: str(event.position),
                HEADER_EVENT_ID: event.event_id,
                HEADER_TYPE: event.type,
            }
            # Offset assigned at commit: the global order is the commit order.
            await tx.append(self.config.notifications, Message(raw, headers, key=stream))
        await tx.put(head_key, Head(recorded[-1].position, now).encode())
        return recorded

    # -- reading ----------------------------------------------------------------------------

    async def head(self, stream: str) -> Head:
        return Head.decode(await self.kv.get(self.config.head_key(check_stream(stream))))

    async def version(self, stream: str) -> int:
        """The stream's current version: its number of events (0: no such stream)."""
        return (await self.head(stream)).version

    async def read_stream(
        self, stream: str, *, after: int = 0, until_version: int | None = None, until_time: float | None = None
    ) -> list[RecordedEvent]:
        """Events of ``stream`` with positions above ``after``, up to ``until_version`` and
        recorded at or before ``until_time`` (time travel), upcast to current schemas."""
        check_stream(stream)
        last = await self.version(stream)
        if until_version is not None:
            last = min(last, check_version(until_version))
        positions = range(after + 1, last + 1)
        events: list[RecordedEvent] = []
        for start in range(0, len(positions), _READ_CONCURRENCY):
            chunk = positions[start : start + _READ_CONCURRENCY]
            raws = await asyncio.gather(*(self.kv.get(self.config.event_key(stream, p)) for p in chunk))
            for position, raw in zip(chunk, raws, strict=True):
                event = self._checked(raw, stream, position)
                if until_time is not None and event.recorded_at > until_time:
                    return events
                events.append(event)
        return events

    def _checked(self, raw: bytes | None, stream: str, position: int) -> RecordedEvent:
        if raw is None:
            raise CorruptStream(f"stream {stream!r} has no event at position {position}, below its version")
        event = RecordedEvent.decode(raw)
        if (event.stream, event.position) != (stream, position):
            raise CorruptStream(f"the record at {stream!r}#{position} claims to be {event.stream!r}#{event.position}")
        return self.upcast(event)

    def upcast(self, event: RecordedEvent) -> RecordedEvent:
        schema, data = self.upcasters.upcast(event.type, event.schema, event.data)
        if schema == event.schema:
            return event
        return RecordedEvent(event.event_id, event.stream, event.position, event.type, schema, data, event.recorded_at)

    async def read_notifications(self, start: int, *, limit: int = 100, wait: float = 0.0) -> list[Notification]:
        """Events in application-wide commit order, from notification ``start`` on."""
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise InvalidEvent(f"a notification offset must be an int >= 0, got {start!r}")
        records = await self.log.read(self.config.notifications, start, limit=limit, wait=wait)
        notifications = []
        for expected, record in enumerate(records, start=start):
            if record.offset != expected:
                raise CorruptStream(f"the notification log skipped from offset {expected} to {record.offset}")
            notifications.append(Notification(record.offset, self.upcast(RecordedEvent.decode(record.message.payload))))
        return notifications

    async def notifications_end(self) -> int:
        """The offset the next committed event will get: how many events the store holds."""
        return await self.log.end_offset(self.config.notifications)
