"""Mutant: a repository records its snapshot one version past the state it holds (the version
the *next* event will have), so loading from it skips that next event.

Loaded with ``-p tests.mutants.es_snapshot_version_off_by_one``; the event-sourcing suite must
report a loaded state that differs from full replay.
"""

from __future__ import annotations

from prism_testkit.patterns.event_sourcing import Repository
from tests.mutants._rewrite import rewrite_line

rewrite_line(
    Repository,
    "save",
    "        return Snapshot(new.version, new.recorded_at, self.aggregate.snapshot_schema, new.state).encode()",
    "        return Snapshot(new.version + 1, new.recorded_at, self.aggregate.snapshot_schema, new.state).encode()",
)
