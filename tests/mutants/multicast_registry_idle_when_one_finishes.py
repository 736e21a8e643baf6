"""Mutant: the multicast registry calls itself idle whenever a multicast finishes, not when the
last one in flight does. With two in flight, the first to finish wakes a waiting stop, which
returns drained at once while the other is still sending.

Loaded with ``-p tests.mutants.multicast_registry_idle_when_one_finishes``; the multicast
registry suite's test of two multicasts in flight must fail.
"""

from __future__ import annotations

from prism_testkit.patterns.multicast_registry import MulticastRegistry
from tests.mutants._rewrite import rewrite_line

rewrite_line(
    MulticastRegistry,
    "multicast",
    "if not self._inflight:",
    "if flight.multicast_id not in self._inflight:  # the bug: this multicast done, so the registry is idle",
)
