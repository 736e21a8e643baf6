"""Mutant: an append retried after an unknown outcome is taken for the earlier attempt when the
stream's next event has the retry's *first* event id, without comparing the rest, so a
different append that shares its first id is swallowed as "already appended".

Loaded with ``-p tests.mutants.es_retry_matches_first_id_only``; the event-sourcing suite must
report a conflicting append that returned success.
"""

from __future__ import annotations

from prism_testkit.patterns.event_sourcing import AppendResult, EventStore
from prism_testkit.patterns.event_sourcing.store import Staged


async def _first_id_only(self: EventStore, stream: str, expected: int, staged: list[Staged]) -> AppendResult | None:
    ids = [event.event_id for event, _, _ in staged]
    if any(event_id is None for event_id in ids):
        return None
    found = await self.read_stream(stream, after=expected, until_version=expected + len(ids))
    if not found or found[0].event_id != ids[0]:  # the bug: only the first id is compared
        return None
    return AppendResult(stream, expected + len(found), tuple(found))


EventStore._already_appended = _first_id_only  # type: ignore[method-assign]
