"""Aggregates: state as the fold of a stream, with snapshots and time travel.

An :class:`Aggregate` says how events fold into state (``initial`` and ``apply``; state must be
JSON-compatible so it can be snapshotted). A :class:`Repository` loads state at the latest
version, at a given version or at a point in time, and saves new events with the loaded
version as the expected one.

Snapshots: when an append takes a stream across a multiple of ``snapshot_interval``, the state
after it is written *in the same transaction* as the events, so a snapshot always equals the
fold of the events up to its version, and loading = snapshot + later events = full replay. A
snapshot is only a shortcut: one taken under another ``snapshot_schema`` is ignored.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .errors import CorruptStream, EventSourcingConfigurationError, UnknownVersion, VersionConflict
from .events import NewEvent, RecordedEvent
from .store import EventStore, check_stream, check_version


class Aggregate(Protocol):
    """How one kind of stream folds into state. ``apply`` must not mutate its input state."""

    snapshot_schema: int  # bump when the state's shape changes: older snapshots are ignored

    def initial(self) -> Any: ...
    def apply(self, state: Any, event: RecordedEvent) -> Any: ...


@dataclass(frozen=True, slots=True)
class Loaded:
    """An aggregate's state at ``version`` (0: empty stream); ``recorded_at`` of its last event."""

    stream: str
    version: int
    state: Any
    recorded_at: float | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    version: int
    recorded_at: float
    schema: int
    state: Any

    def encode(self) -> bytes:
        body = {"version": self.version, "at": self.recorded_at, "schema": self.schema, "state": self.state}
        return json.dumps(body, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Snapshot:
        try:
            body = json.loads(raw)
            return cls(int(body["version"]), float(body["at"]), int(body["schema"]), body["state"])
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptStream(f"a snapshot cannot be decoded: {exc!r}") from None


Decide = Callable[[Loaded], Sequence[NewEvent]]


class Repository:
    """Loads and saves one kind of aggregate in ``store``."""

    def __init__(self, store: EventStore, aggregate: Aggregate, *, snapshot_interval: int | None = None) -> None:
        interval = store.config.snapshot_interval if snapshot_interval is None else snapshot_interval
        if interval is not None and interval < 1:
            raise EventSourcingConfigurationError(f"snapshot_interval must be >= 1 or None, got {interval}")
        self.store = store
        self.aggregate = aggregate
        self.snapshot_interval = interval

    # -- loading ----------------------------------------------------------------------------

    async def load(
        self,
        stream: str,
        *,
        at_version: int | None = None,
        at_time: float | None = None,
        use_snapshot: bool = True,
    ) -> Loaded:
        """State at the latest version, or at ``at_version``, or as of ``at_time``."""
        check_stream(stream)
        if at_version is not None:
            check_version(at_version)
            current = await self.store.version(stream)
            if at_version > current:
                raise UnknownVersion(stream, at_version, current)
        start = Loaded(stream, 0, self.aggregate.initial())
        snapshot = await self.snapshot(stream) if use_snapshot else None
        if (
            snapshot is not None
            and (at_version is None or snapshot.version <= at_version)
            and (at_time is None or snapshot.recorded_at <= at_time)
        ):
            start = Loaded(stream, snapshot.version, snapshot.state, snapshot.recorded_at)
        events = await self.store.read_stream(stream, after=start.version, until_version=at_version, until_time=at_time)
        return self._fold(start, events)

    async def snapshot(self, stream: str) -> Snapshot | None:
        """The stream's latest usable snapshot (None: none, or one of another state schema)."""
        raw = await self.store.kv.get(self.store.config.snapshot_key(check_stream(stream)))
        if raw is None:
            return None
        snapshot = Snapshot.decode(raw)
        return snapshot if snapshot.schema == self.aggregate.snapshot_schema else None

    def _fold(self, start: Loaded, events: Sequence[RecordedEvent]) -> Loaded:
        state, version, at = start.state, start.version, start.recorded_at
        for event in events:
            if event.position != version + 1:
                raise CorruptStream(f"stream {start.stream!r} jumps from version {version} to {event.position}")
            state, version, at = self.aggregate.apply(state, event), event.position, event.recorded_at
        return Loaded(start.stream, version, state, at)

    # -- saving -----------------------------------------------------------------------------

    async def save(self, loaded: Loaded, events: Sequence[NewEvent]) -> Loaded:
        """Append ``events`` after ``loaded`` (its version is the expected one); the new state.

        :class:`VersionConflict` when the stream moved on since ``loaded`` was read."""
        interval = self.snapshot_interval

        def snapshot_of(recorded: Sequence[RecordedEvent]) -> bytes | None:
            # Runs inside the append's transaction, with the exact events being committed.
            version = loaded.version + len(recorded)
            if interval is None or version // interval == loaded.version // interval:
                return None
            new = self._fold(loaded, [self.store.upcast(e) for e in recorded])
            assert new.recorded_at is not None
            return Snapshot(new.version, new.recorded_at, self.aggregate.snapshot_schema, new.state).encode()

        result = await self.store.append_with_snapshot(loaded.stream, events, loaded.version, snapshot_of)
        return self._fold(loaded, [self.store.upcast(e) for e in result.events])

    async def execute(self, stream: str, decide: Decide, *, attempts: int = 3) -> Loaded:
        """Load, ``decide`` the events from the current state, save; on a
        :class:`VersionConflict` reload and decide again (``attempts`` times in all).

        ``decide`` validates the command against the state and raises to refuse it."""
        if attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {attempts}")
        for attempt in range(1, attempts + 1):
            loaded = await self.load(stream)
            events = list(decide(loaded))
            if not events:
                return loaded
            try:
                return await self.save(loaded, events)
            except VersionConflict:
                if attempt == attempts:
                    raise
        raise AssertionError("unreachable")
