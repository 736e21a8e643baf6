"""Mutant: CDC-fed CQRS health counts only captured transactions *above* a read model's
position (``>`` for ``>=``), so the very next transaction the model has not applied is left out
of its lag (events and seconds behind).

Loaded with ``-p tests.mutants.cqrs_cdc_lag_skips_next_transaction``; the CQRS suite must report
a read model's lag that leaves out unapplied changes.
"""

from __future__ import annotations

from prism_testkit.patterns.cqrs import ReadModelHealth
from prism_testkit.patterns.cqrs_cdc import CdcCqrs


async def _health(self: CdcCqrs, *, scan: int = 1000) -> list[ReadModelHealth]:
    if not self._started:
        await self.start()
    pending = [s for s in await self.feed.read(self.connector.config.capture, limit=scan) if s.changes]
    report = []
    for name, runner in self.read_models.items():
        position = await runner.position()
        behind = [s for s in pending if s.position > position]  # the bug: > for >=
        seconds = max(0.0, self.clock() - behind[0].commit_ts_ms / 1000) if behind else 0.0
        alert = seconds > self.config.lag_tolerance
        self.metrics.lag_alerts += alert
        self.metrics.max_seconds_behind = max(self.metrics.max_seconds_behind, seconds)
        report.append(ReadModelHealth(name, sum(len(s.changes) for s in behind), seconds, alert))
    return report


CdcCqrs.health = _health  # type: ignore[method-assign]
