"""Mutant: a repository snapshots only when an append *lands* on a multiple of
``snapshot_interval`` (``version % interval == 0``), not when it crosses one, so a stream grown
by multi-event appends may never get a snapshot.

Loaded with ``-p tests.mutants.es_snapshot_only_on_exact_multiple``; the event-sourcing suite
must report a missing snapshot.
"""

from __future__ import annotations

from collections.abc import Sequence

from prism_testkit.patterns.event_sourcing import Loaded, NewEvent, RecordedEvent, Repository, Snapshot


async def _save(self: Repository, loaded: Loaded, events: Sequence[NewEvent]) -> Loaded:
    interval = self.snapshot_interval

    def snapshot_of(recorded: Sequence[RecordedEvent]) -> bytes | None:
        version = loaded.version + len(recorded)
        if interval is None or version % interval != 0:  # the bug: crossing a multiple is not enough
            return None
        new = self._fold(loaded, [self.store.upcast(e) for e in recorded])
        assert new.recorded_at is not None
        return Snapshot(new.version, new.recorded_at, self.aggregate.snapshot_schema, new.state).encode()

    result = await self.store.append_with_snapshot(loaded.stream, events, loaded.version, snapshot_of)
    return self._fold(loaded, [self.store.upcast(e) for e in result.events])


Repository.save = _save  # type: ignore[method-assign]
