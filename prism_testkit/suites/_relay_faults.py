"""A relay (or change-feed publisher) process dying, as the outbox suites simulate it: after the
fault fires, nothing the dead process does reaches a store (so it can neither commit its offset
or feed position nor release its lease)."""

from __future__ import annotations

from typing import Protocol

from prism_testkit import KeyValue
from prism_testkit.faults.interpose import Interposed
from prism_testkit.interfaces import ChangeFeed


class Mortal(Protocol):
    def check(self) -> None:
        """Raise :class:`._doubles.Killed` once the process is dead."""
        ...


class DyingKeyValue(Interposed[KeyValue]):
    """The relay's key-value as a killed process sees it: unreachable once the fault fired, so
    the dead relay can neither commit its offset nor release its lease."""

    def __init__(self, inner: KeyValue, fault: Mortal) -> None:
        super().__init__(inner, surface=KeyValue, before_every=lambda call: fault.check())
        self.fault = fault


class DyingChangeFeed(Interposed[ChangeFeed]):
    """A change feed as a killed publisher process sees it: once the fault fired, the dead
    publisher can neither read nor confirm (so it never moves the position past what it sent)."""

    def __init__(self, inner: ChangeFeed, fault: Mortal) -> None:
        super().__init__(inner, surface=ChangeFeed, before_every=lambda call: fault.check())
        self.fault = fault
