"""Mutant: CDC-fed CQRS health measures a read model's seconds behind from the *newest*
captured transaction it has not applied instead of the oldest, so a read model that fell behind
long ago looks only as late as the last command.

Loaded with ``-p tests.mutants.cqrs_cdc_lag_from_newest_transaction``; the CQRS suite must report
the lag measured from another transaction than the oldest unapplied one.
"""

from __future__ import annotations

from prism_testkit.patterns.cqrs_cdc import CdcCqrs
from tests.mutants._rewrite import rewrite_line

rewrite_line(
    CdcCqrs,
    "health",
    "        seconds = max(0.0, self.clock() - behind[0].commit_ts_ms / 1000) if behind else 0.0",
    "        seconds = max(0.0, self.clock() - behind[-1].commit_ts_ms / 1000) if behind else 0.0  # the bug",
)
