"""Mutant: a second ``stop()`` of a stopped process runs the whole stop again (drain, forced
stop, release) instead of refusing it, and replaces the first stop's report.

Loaded with ``-p tests.mutants.lifecycle_second_stop_runs_again``.
"""

from __future__ import annotations

from prism_testkit.pattern_sdk.lifecycle import LifecycleState, PatternProcess, StopReport

_stop = PatternProcess.stop


async def _stop_again(self: PatternProcess, within: float | None = None) -> StopReport:
    if self._state is LifecycleState.STOPPED:
        self._state = LifecycleState.RUNNING  # the bug: a stopped process is stopped again
    return await _stop(self, within)


PatternProcess.stop = _stop_again  # type: ignore[method-assign]
