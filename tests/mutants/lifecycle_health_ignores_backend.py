"""Mutant: a batch process's health looks only at its own loop, never at the backend, so it
reads healthy while the backend is gone or hangs.

Loaded with ``-p tests.mutants.lifecycle_health_ignores_backend``.
"""

from __future__ import annotations

from prism_testkit.pattern_sdk.lifecycle import BatchProcess, Health, HealthStatus


async def _check_health(self: BatchProcess) -> Health:
    task = self._loop_task
    if task is None or task.done():
        return Health(HealthStatus.UNHEALTHY, self.state, "the loop is not running")
    return Health(HealthStatus.HEALTHY, self.state)  # the bug: the backend is never asked


BatchProcess._check_health = _check_health  # type: ignore[method-assign]
