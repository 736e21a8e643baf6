"""Mutant: a forced stop cancels the batch in hand but reports nothing left.

Loaded with ``-p tests.mutants.lifecycle_forced_stop_names_nothing``.
"""

from __future__ import annotations

from collections.abc import Sequence

from prism_testkit.pattern_sdk.lifecycle import BatchProcess

_force_stop = BatchProcess._force_stop


async def _force_stop_silently(self: BatchProcess) -> Sequence[str]:
    await _force_stop(self)
    return []  # the bug


BatchProcess._force_stop = _force_stop_silently  # type: ignore[method-assign]
