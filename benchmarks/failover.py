"""Start time and failover time of the clusters that can fail over (``postgres-ha``,
``postgres-ha-async``, ``redis-sentinel``, ``redis-sentinel-wait``).

Start time is the cluster's own ``time_to_ready`` (first process to a settled cluster). A
failover trial loses the primary (SIGKILL), waits until clients can find the promoted replica
(:meth:`~prism_testkit.provision.cluster.FailoverCluster.failover`, which times itself), then
restores the cluster (the old primary back as a replica: timed apart, it is not part of what
clients wait for). Run last: each trial moves the primary.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from prism_testkit.provision.cluster import FailoverCluster


def failover_row(name: str, cluster: FailoverCluster, trials: int) -> dict[str, Any]:
    failovers: list[float] = []
    restores: list[float] = []
    for _ in range(trials):
        cluster.wait_settled()
        cluster.failover()
        failovers.append(cluster.failover_seconds[-1])
        started = time.monotonic()
        cluster.restore()
        restores.append(time.monotonic() - started)
    return {
        "backend": name,
        "start_seconds": cluster.time_to_ready,
        "failover_seconds": failovers,
        "restore_seconds": restores,
    }


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f} - {max(values):.2f})"


def failover_markdown(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "",
        "## Clusters: start and failover (seconds, median (min - max))",
        "",
        "| backend | start | failover (kill -> new primary found) | restore (old primary a replica) |",
        "|---|---:|---:|---:|",
    ]
    for r in rows:
        start = "-" if r["start_seconds"] is None else f"{r['start_seconds']:.2f}"
        lines.append(
            f"| {r['backend']} | {start} | {_spread(r['failover_seconds'])} | {_spread(r['restore_seconds'])} |"
        )
    return lines
