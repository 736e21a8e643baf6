"""Mutant: a postgres-ha failover promotes the standby that replayed the most WAL, not the one
that received the most, so a standby whose replay lags (``pg_wal_replay_pause()``) loses to
one that replayed what it had, and commits only the first had received are discarded.

Loaded with ``-p tests.mutants.postgres_ha_promotes_by_replayed_wal``. The one line of
``PostgresHaCluster.most_advanced_standby`` that reads a standby's position is rewritten in
the method's own source.
"""

from __future__ import annotations

from prism_testkit.backends.postgres import ha
from tests.mutants._rewrite import rewrite_line

RECEIVED = 'lsn = self.sql(node, f"SELECT {WAL_END}", timeout=5)'
BROKEN = "lsn = self.sql(node, \"SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::bigint\", timeout=5)"

rewrite_line(ha.PostgresHaCluster, "most_advanced_standby", RECEIVED, BROKEN)
