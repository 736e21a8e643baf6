"""Mutant: offset-stamped key-value views treat a key as already changed only when its stamp is
*above* the replayed event's offset (``>`` for ``>=``), so an event replayed after a crash
applies again to keys it already wrote.

Loaded with ``-p tests.mutants.kv_views_reapply_own_offset``; the event-sourcing suite must
report a view that applied an event twice.
"""

from __future__ import annotations

from prism_testkit.patterns.event_sourcing import views


async def _read(self: views._StampedWriter, key: str) -> bytes | None:
    if key not in self._seen:
        raw = await self._views.kv.get(self._views.view(key))
        self._seen[key] = raw
        if raw is not None and views._stamp(raw)[0] > self._offset:  # the bug: > for >=
            self._done.add(key)
    return self._seen[key]


views._StampedWriter._read = _read  # type: ignore[method-assign]
