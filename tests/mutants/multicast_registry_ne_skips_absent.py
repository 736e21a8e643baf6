"""Mutant: ``ne`` (and ``nin``) no longer match an identity that lacks the field, so a
multicast to "everyone not in room x" misses the identities with no room at all.

Loaded with ``-p tests.mutants.multicast_registry_ne_skips_absent``.
"""

from __future__ import annotations

from collections.abc import Mapping

from prism_testkit.patterns.multicast_registry import Condition, Scalar

_holds = Condition.holds


def holds(self: Condition, metadata: Mapping[str, Scalar]) -> bool:
    if self.op in ("ne", "nin") and self.field not in metadata:
        return False  # the bug
    return _holds(self, metadata)


Condition.holds = holds  # type: ignore[method-assign]
