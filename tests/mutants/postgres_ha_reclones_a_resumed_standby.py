"""Mutant: a standby paused through a failover is, once resumed, killed and cloned afresh from
the new primary even when its WAL ends before the fork and a re-point would do: the cluster
still converges, slower, and the standby's process and its caches are lost (issue 66).

Loaded with ``-p tests.mutants.postgres_ha_reclones_a_resumed_standby``.
"""

from __future__ import annotations

from prism_testkit.backends.postgres.ha import PostgresHaCluster
from tests.mutants._rewrite import rewrite_line

rewrite_line(PostgresHaCluster, "_follow", "if position is None or position > fork:", "if True:")
