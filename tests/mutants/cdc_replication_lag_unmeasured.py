"""Mutant: the CDC connector computes replication lag as commit time minus publish time (the
operands swapped), which is never positive and is clamped to 0: the metric always reads 0.

Loaded with ``-p tests.mutants.cdc_replication_lag_unmeasured``; the CDC suite must report a
lag of 0 for changes published seconds after their commit.
"""

from __future__ import annotations

from prism_testkit.interfaces import ChangeSet
from prism_testkit.patterns.cdc import CdcConnector

_publish_set = CdcConnector._publish_set


async def _swapped_lag(self: CdcConnector, change_set: ChangeSet) -> int:
    published = await _publish_set(self, change_set)
    self.metrics.replication_lag_seconds = max(0.0, change_set.commit_ts_ms / 1000 - self.clock())  # the bug
    return published


CdcConnector._publish_set = _swapped_lag  # type: ignore[method-assign]
