"""Mutant: the producer counts a batch's interval from its newest message instead of its first,
so a steady trickle of messages, each younger than the interval, is never published until it
stops.

Loaded with ``-p tests.mutants.producer_interval_from_newest``.
"""

from __future__ import annotations

from prism_testkit.patterns.producer import Producer


def _due_from_newest(self: Producer, interval: float) -> float:
    return self._buffer[-1].handed_at + interval  # the bug: the newest message, not the first


Producer._batch_due = _due_from_newest  # type: ignore[method-assign]
