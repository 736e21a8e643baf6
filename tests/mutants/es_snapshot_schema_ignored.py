"""Mutant: a repository uses a stream's snapshot whatever the ``snapshot_schema`` it was taken
under, so after the aggregate's state changed shape, loading starts from a state of the old
shape.

Loaded with ``-p tests.mutants.es_snapshot_schema_ignored``; the event-sourcing suite must
report a loaded state that differs from full replay.
"""

from __future__ import annotations

from prism_testkit.patterns.event_sourcing import Repository, Snapshot
from prism_testkit.patterns.event_sourcing.store import check_stream


async def _any_snapshot(self: Repository, stream: str) -> Snapshot | None:
    raw = await self.store.kv.get(self.store.config.snapshot_key(check_stream(stream)))
    return None if raw is None else Snapshot.decode(raw)  # the bug: no schema check


Repository.snapshot = _any_snapshot  # type: ignore[method-assign]
