"""Mutant: ``stop(within=)`` ignores ``within`` and drains for the pattern's default bound
(its ``graceful_timeout``), so a stop over a hung backend waits that long.

Loaded with ``-p tests.mutants.lifecycle_stop_ignores_within``.
"""

from __future__ import annotations

from prism_testkit.pattern_sdk.lifecycle import PatternProcess, StopReport

_stop = PatternProcess.stop


async def _stop_ignoring_within(self: PatternProcess, within: float | None = None) -> StopReport:
    return await _stop(self, None)  # the bug


PatternProcess.stop = _stop_ignoring_within  # type: ignore[method-assign]
