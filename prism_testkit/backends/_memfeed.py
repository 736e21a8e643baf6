"""The in-process change feed of memstore.

Every write of the key-value state reports (key, before, after) here; the writes of one
memstore transaction are grouped into one :class:`ChangeSet`. Nothing awaits between a write
and its report, so the feed's order is the commit order. Like the rest of memstore it lives
as long as the process.

A capture can be *lost* by fault injection (:meth:`MemFeed.lose`), as a failover to a
PostgreSQL standby loses a slot: its record stays, its position and unconfirmed changes go,
and every call but a drop raises :class:`~prism_testkit.errors.CaptureLost`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import prism_testkit.simulation.clock as clocks
from prism_testkit.errors import CaptureLost, CaptureNotFound
from prism_testkit.interfaces import ChangeSet, KeyChange


@dataclass
class Capture:
    prefix: str
    confirmed: int = 0
    pending: list[ChangeSet] = field(default_factory=list)  # committed, not yet confirmed
    lost: bool = False  # its position is gone: it records nothing and refuses every call


class MemFeed:
    def __init__(self) -> None:
        self.captures: dict[str, Capture] = {}
        self._positions = itertools.count(1)
        self._open: list[KeyChange] | None = None  # changes of the transaction being applied

    def record(self, key: str, before: bytes | None, after: bytes | None) -> None:
        if before is None and after is None:
            return  # deleting an absent key changes nothing
        if not any(key.startswith(c.prefix) and not c.lost for c in self.captures.values()):
            return
        change = KeyChange(key, before, after)
        if self._open is not None:
            self._open.append(change)
        else:
            self._commit([change])

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group the writes made inside into one committed transaction."""
        self._open = []
        try:
            yield
        finally:
            changes, self._open = self._open, None
            if changes:
                self._commit(changes)

    def _commit(self, changes: list[KeyChange], marks: dict[str, str] | None = None) -> None:
        position = next(self._positions)
        now_ms = int(clocks.wall() * 1000)
        for name, capture in self.captures.items():
            if capture.lost:
                continue
            mine = tuple(c for c in changes if c.key.startswith(capture.prefix))
            label = (marks or {}).get(name)
            if mine or label is not None:
                marked = () if label is None else (label,)
                capture.pending.append(ChangeSet(position, f"mem-{position}", now_ms, mine, marked))

    def capture(self, name: str) -> Capture:
        """A capture that holds its position."""
        capture = self.captures.get(name)
        if capture is None:
            raise CaptureNotFound(name)
        if capture.lost:
            raise CaptureLost(name, f"its position (last confirmed {capture.confirmed}) was lost")
        return capture

    def lose(self, name: str) -> None:
        capture = self.captures.get(name)
        if capture is None:
            raise CaptureNotFound(name)
        capture.lost = True
        capture.pending = []

    def mark(self, name: str, label: str) -> None:
        self.capture(name)
        self._commit([], {name: label})

    def read(self, name: str, limit: int) -> list[ChangeSet]:
        return self.capture(name).pending[:limit]

    def confirm(self, name: str, position: int) -> None:
        capture = self.capture(name)
        capture.confirmed = max(capture.confirmed, position)
        capture.pending = [s for s in capture.pending if s.position > capture.confirmed]
